"""An agent whose new or lagging state cannot be told the product's fence (``fence_not_pushed``).

An infrastructure problem: the activation is abandoned, nobody is charged, and the host is
backed off as after unknown init outcomes, so that each tick does not start (and bump the fence
of) another activation.
"""

from __future__ import annotations

from typing import Any

from models.assessment import assess
from models.domain import AgentState, HostStatus, Trigger
from models.errors import AgentUnavailable
from models.policy import Skip, decide
from tests.fakes.ports import good_report
from tests.unit.activation.conftest import CLUSTER, INIT_MAX_S, MAX_AGE_S, World


def _refuse(target: Any, fence: int) -> int | None:
    raise AgentUnavailable("h1: /fence: HTTP 500")


def _new_state_report(world: World) -> None:
    world.agents.reports["h1"] = good_report(
        "h1", world.clock(), protocol=2, agent=AgentState("new-state", 0)
    )


def _tick_decision(world: World) -> str:
    report = good_report("h1", world.clock(), protocol=2, agent=AgentState("new-state", 0))
    assessment = assess(report, CLUSTER, world.clock(), MAX_AGE_S)
    return decide(world.host(), assessment, Trigger.AUTO, now=world.clock()).code


def test_a_fence_that_cannot_be_pushed_backs_the_host_off_uncharged(world: World) -> None:
    world.agents.raise_fence = _refuse  # type: ignore[method-assign]
    delays = []
    for n in range(1, 4):
        act_id = world.out_host(activation_id=f"act-{n}")
        _new_state_report(world)
        assert world.activation.run(act_id, "h1").outcome == "fence_not_pushed"
        assert world.agents.init_calls == []
        h1 = world.host()
        assert h1.next_attempt_at is not None, "no backoff: a new activation every tick"
        delays.append((h1.next_attempt_at - world.clock()).total_seconds())
        assert _tick_decision(world) == Skip.BACKOFF.value
        with world.db.transaction() as conn:
            [entry] = world.repos.audit.query(conn, object_id="h1", event="backoff", limit=1)
        assert entry["reason"] == f"{n} unknown init outcome(s) or unpushed fence(s) in a row"
        assert entry["details"]["charged"] is False
        world.clock.advance(delays[-1])
    assert delays[0] < delays[2]  # it grows as failures' backoff does
    h1 = world.host()
    assert (h1.failures, h1.quarantined_at, h1.status) == (0, None, HostStatus.NON_OPERATIONAL)
    assert "quarantined" not in world.events()


def test_a_retried_activation_whose_fence_cannot_be_pushed_leaves_no_host_initializing(
    world: World,
) -> None:
    act_id = world.out_host()
    fence = world.begin(act_id)  # its first attempt set the host initializing, then died
    with world.db.transaction() as conn:
        assert world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    world.agents.raise_fence = _refuse  # type: ignore[method-assign]
    _new_state_report(world)
    assert world.activation.run(act_id, "h1").outcome == "fence_not_pushed"
    h1 = world.host()
    assert (h1.status, h1.reason) == (HostStatus.NON_OPERATIONAL, "activation_failed")
    # The first attempt may have sent an init that still runs: held, as a skipped resumed one is.
    assert h1.init_hold_until is not None
    world.clock.advance(INIT_MAX_S / 2)
    assert _tick_decision(world) != "activate"
    assert (h1.failures, h1.quarantined_at) == (0, None)
