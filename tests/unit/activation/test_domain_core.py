"""The fenced core on storage-domain activations: the same guarantees as hosts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from autorecovery.adapters import keys
from autorecovery.adapters.agents import InitResult, InitStatus
from autorecovery.services.activation import LockBusyRetry
from autorecovery.services.fleet import HostSpec
from models.domain import DomainStatus
from models.errors import AgentBusy, InitOutcomeUnknown
from tests.fakes.ports import good_report
from tests.unit.activation.conftest import CLUSTER, INIT_MAX_S, LOCK_TTL_S, T0, World

SD_LOCK = keys.storage_domain_lock("sd-1")


def inactive_domain(world: World, activation_id: str = "sd-act-1", hosts: tuple[str, ...] = ("h1",)) -> str:
    """sd-1 inactive, reached again by ``hosts``, its activation queued."""
    world.fleet.register_cluster(CLUSTER, "admin")
    world.fleet.register_hosts([HostSpec(h, CLUSTER.id, f"http://{h}") for h in hosts], "admin")
    with world.db.transaction() as conn:
        for h in hosts:
            world.repos.hosts.set_status(conn, h, "up", None, None, T0)
        world.repos.hosts.upsert_reports(conn, [good_report(h, T0 - timedelta(seconds=1)) for h in hosts], T0)
        world.repos.storage.set_status(conn, "sd-1", DomainStatus.INACTIVE.value, "unreached", T0)
        assert world.repos.storage.queue_activation(
            conn, activation_id, "sd-1", trigger="auto", actor="auto", now=T0
        )
    return activation_id


def begin(world: World, activation_id: str) -> int:
    with world.db.transaction() as conn:
        fence = world.repos.storage.begin_activation(conn, activation_id, T0)
    assert fence is not None
    return int(fence)


def test_a_domain_is_connected_through_a_host_and_active(world: World) -> None:
    act_id = inactive_domain(world)
    out = world.storage.run(act_id, "sd-1")
    assert out.as_dict() == {
        "activation_id": act_id,
        "sd_id": "sd-1",
        "outcome": "active",
        "detail": "connected through host h1",
        "fence": 1,
    }
    assert world.domain().status is DomainStatus.ACTIVE
    assert world.agents.connect_calls == [("h1", "sd-1", 1, act_id)]


def test_a_lost_domain_lock_stops_the_connect(world: World) -> None:
    act_id = inactive_domain(world)
    get_targets = world.repos.storage.connect_targets

    def targets_then_lock_lost(conn: Any, sd_id: str, fresh: Any) -> Any:
        world.redis.delete(SD_LOCK)
        return get_targets(conn, sd_id, fresh)

    world.repos.storage.connect_targets = targets_then_lock_lost  # type: ignore[attr-defined]
    out = world.storage.run(act_id, "sd-1")
    assert out.outcome == "lock_lost"
    assert world.agents.connect_calls == []
    assert (world.sd_act(act_id)["state"], world.domain().status) == ("abandoned", DomainStatus.INACTIVE)


def test_a_busy_domain_lock_held_by_a_running_delivery_is_retried_and_never_closed(world: World) -> None:
    act_id = inactive_domain(world)
    fence = begin(world, act_id)
    holder = world.hold(SD_LOCK, owner=act_id)
    with pytest.raises(LockBusyRetry) as caught:
        world.storage.run(act_id, "sd-1")
    assert caught.value.retry_after_s >= LOCK_TTL_S - 1
    assert world.storage.give_up(act_id, "sd-1", "retries exhausted") is False
    assert (world.sd_act(act_id)["state"], world.domain().fence) == ("sending", fence)
    holder.release()


def test_giving_up_a_domain_activation_bumps_its_fence(world: World) -> None:
    act_id = inactive_domain(world)
    fence = begin(world, act_id)  # its worker died
    assert world.storage.give_up(act_id, "sd-1", "retries exhausted: redis down") is True
    row = world.sd_act(act_id)
    assert (row["state"], row["outcome"], world.domain().fence) == ("abandoned", "gave_up", fence + 1)
    with world.db.transaction() as conn:
        assert not world.repos.storage.set_status(conn, "sd-1", "active", "late", T0, fence=fence)


def test_a_busy_or_unseen_connect_is_not_a_failure(world: World) -> None:
    act_id = inactive_domain(world, hosts=("h1", "h2"))
    connect = world.agents.connect_storage_domain
    answers: list[Exception] = [AgentBusy("busy"), InitOutcomeUnknown("read timeout")]

    def busy_then_unknown(*args: Any) -> InitResult:
        connect(*args)
        raise answers.pop(0)

    world.agents.connect_storage_domain = busy_then_unknown  # type: ignore[method-assign]
    out = world.storage.run(act_id, "sd-1")
    assert (out.outcome, out.failed) == ("sent", False)
    row = world.sd_act(act_id)
    assert (row["state"], row["answer"], row["target"]) == ("sent", "unknown", "h2")
    assert len(world.agents.connect_calls) == 2
    # Held by its record: later steps send no second connect until the deadline, then abandon.
    assert world.storage.check(act_id, "sd-1").outcome == "sent"
    world.clock.advance(INIT_MAX_S)
    out = world.storage.check(act_id, "sd-1")
    assert (out.outcome, out.failed) == ("outcome_unknown", False)
    assert world.sd_act(act_id)["state"] == "abandoned"
    assert len(world.agents.connect_calls) == 2
    assert world.domain().status is DomainStatus.INACTIVE


def test_an_auto_activation_of_a_domain_an_admin_put_in_maintenance_is_skipped(world: World) -> None:
    act_id = inactive_domain(world)
    begin(world, act_id)  # a holder began, then paused
    world.storage.set_maintenance("sd-1", "alice", "array upgrade")
    row = world.sd_act(act_id)
    assert (row["state"], row["outcome"]) == ("abandoned", "maintenance")
    assert world.domain().fence == 2  # the paused holder's fence (1) writes nothing now
    with world.db.transaction() as conn:
        assert not world.repos.storage.set_status(conn, "sd-1", "active", "late", T0, fence=1)
        assert world.repos.storage.queue_activation(
            conn, "sd-act-2", "sd-1", trigger="auto", actor="auto", now=T0
        )
    out = world.storage.run("sd-act-2", "sd-1")
    assert (out.outcome, world.domain().status) == ("not_needed", DomainStatus.MAINTENANCE)
    assert world.agents.connect_calls == []


def test_an_unseen_connect_is_asked_about_and_closes_when_its_agent_answers(world: World) -> None:
    act_id = inactive_domain(world)
    world.agents.connect_storage_domain = _unseen(world)  # type: ignore[method-assign]
    assert world.storage.run(act_id, "sd-1").outcome == "sent"
    world.agents.statuses[act_id] = InitStatus(act_id, 1, running=True)  # a hung mount
    assert world.storage.check(act_id, "sd-1").outcome == "sent"
    assert world.domain().status is DomainStatus.INACTIVE
    world.agents.statuses[act_id] = InitStatus(act_id, 1, running=False, ok=True)  # it answers again
    out = world.storage.check(act_id, "sd-1")
    assert (out.outcome, world.domain().status) == ("active", DomainStatus.ACTIVE)
    assert len(world.agents.connect_calls) == 1  # asked, never sent twice


def _unseen(world: World) -> Any:
    connect = world.agents.connect_storage_domain

    def unseen(*args: Any) -> InitResult:
        connect(*args)
        raise InitOutcomeUnknown("read timeout")

    return unseen


def test_a_v2_connect_answers_at_once_and_a_later_step_sees_it_done(world: World) -> None:
    act_id = inactive_domain(world)
    world.agents.async_connects.add("h1")  # 202: it runs the connect; no step waits for it
    out = world.storage.run(act_id, "sd-1")
    assert (out.outcome, out.check_in_s) == ("sent", 1.0)
    assert world.sd_act(act_id)["answer"] == "running"
    world.agents.statuses[act_id] = InitStatus(act_id, 1, running=False, ok=True)
    assert world.storage.check(act_id, "sd-1").outcome == "active"
    assert len(world.agents.connect_calls) == 1
