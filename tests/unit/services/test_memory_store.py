"""The memory store itself: transactions, rollbacks, copies."""

from __future__ import annotations

import pytest

from tests.fakes.ports import good_report
from tests.unit.services.world import T0, S, World, queued_out_host


def test_memory_store_rolls_back_and_guards_its_connections(world: World) -> None:
    world.register("h1")
    with pytest.raises(ZeroDivisionError), world.db.transaction() as conn:
        world.repos.hosts.set_status(conn, "h1", "up", None, None, T0)
        1 / 0  # noqa: B018
    assert world.host("h1").status is S.UNASSIGNED
    with world.db.transaction() as conn:
        kept = conn
    with pytest.raises(RuntimeError, match="after its transaction"):
        world.repos.hosts.get_host(kept, "h1")
    with pytest.raises(RuntimeError, match="nested"), world.db.transaction(), world.db.transaction():
        pass
    with pytest.raises(TypeError):
        world.repos.hosts.get_host(object(), "h1")
    world.db.unavailable = True
    with pytest.raises(Exception, match="unavailable"):
        world.views.describe("h1")


# --- review fixes: nothing stuck in initializing, no close of another delivery's run ---------


def test_a_redelivered_activation_that_skips_returns_an_initializing_host_to_non_operational(
    world: World,
) -> None:
    # An earlier attempt of this activation set `initializing`, then its worker died.
    act_id = queued_out_host(world)
    world.set_status("h1", S.INITIALIZING)
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "has_problems"
    h1 = world.host("h1")
    assert (h1.status, h1.reason) == (S.NON_OPERATIONAL, "kvm_not_running")
    assert world.act(act_id).state == "skipped"
    assert world.agents.init_calls == []


def test_giving_up_bumps_the_fence_so_a_paused_attempt_writes_nothing(world: World) -> None:
    act_id = queued_out_host(world)
    with world.db.transaction() as conn:
        fence = world.repos.activations.begin(conn, act_id, T0)
    world.set_status("h1", S.INITIALIZING)
    world.activation.give_up(act_id, "h1", "retries exhausted: redis down")
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence) == (S.NON_OPERATIONAL, "activation_failed", fence + 1)
    with world.db.transaction() as conn:
        assert not world.repos.hosts.set_status(conn, "h1", "up", None, "late", T0, fence=fence)
