"""Agent protocol v2 in the activation: an unseen init outcome, a busy agent, stale holders.

None of these is a failed init or charged to the host; a v2 agent is asked how its init went,
a v1 agent's host is held so that no second init overlaps one that may still run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from autorecovery.adapters.agents import InitStatus, Target
from models.assessment import assess
from models.domain import HostStatus, Report, Trigger
from models.errors import AgentBusy, InitOutcomeUnknown
from models.policy import Skip, decide
from tests.fakes.ports import good_report
from tests.unit.activation.conftest import CLUSTER, INIT_MAX_S, MAX_AGE_S, T0, World

S = HostStatus
UNSEEN = InitOutcomeUnknown("h1: ReadTimeout after 20s")


def speaks(world: World, protocol: int, host_id: str = "h1") -> None:
    world.agents.reports[host_id] = replace(world.agents.reports[host_id], protocol=protocol)


def status(running: bool, ok: bool | None = None, reason: str | None = None) -> InitStatus:
    return InitStatus("act-1", 1, running=running, ok=ok, reason=reason, detail=reason)


def assert_not_charged(world: World) -> None:
    h1 = world.host()
    assert (h1.failures, h1.next_attempt_at, h1.quarantined_at) == (0, None, None)
    assert "backoff" not in world.events()


# --- v2: ask the agent -------------------------------------------------------------------------


def test_v2_unknown_then_done_ok_brings_the_host_up_after_asking(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.init_errors["h1"] = UNSEEN
    world.agents.status_script[act_id] = [status(True), None, status(False, ok=True)]
    seen: list[str] = []
    set_status = world.repos.hosts.set_status

    def watch(conn: Any, host_id: str, status_: str, *a: Any, **kw: Any) -> bool:
        seen.append(status_)
        return bool(set_status(conn, host_id, status_, *a, **kw))

    world.repos.hosts.set_status = watch  # type: ignore[attr-defined]
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "up"
    assert seen == ["initializing", "up"]  # initializing all along while asking
    assert len(world.agents.init_calls) == 1
    assert len(world.agents.status_calls) == 3
    asked = [e for e in world.events() if e == "init_outcome_asked"]
    assert asked == ["init_outcome_asked"]
    assert world.host().status is S.UP


def test_v2_unknown_then_done_failed_is_the_agents_failure(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.init_errors["h1"] = UNSEEN
    world.agents.status_script[act_id] = [status(False, ok=False, reason="storage_domain_unreachable")]
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.failed) == ("failed", True)
    h1 = world.host()
    assert (h1.status, h1.reason) == (S.NON_OPERATIONAL, "storage_domain_unreachable")
    assert h1.failures == 1  # a real result, seen: it counts


def test_v2_unknown_until_init_max_is_not_a_failure_and_not_charged(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.init_errors["h1"] = UNSEEN
    world.agents.statuses[act_id] = status(True)
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.failed) == ("outcome_unknown", False)
    assert world.clock() >= T0 + timedelta(seconds=INIT_MAX_S)
    assert len(world.agents.status_calls) >= INIT_MAX_S - 1
    act, h1 = world.act(act_id), world.host()
    assert act.state == "abandoned"
    assert (h1.status, h1.reason, h1.init_hold_until) == (S.NON_OPERATIONAL, "activation_failed", None)
    assert_not_charged(world)


def test_a_resumed_v2_activation_asks_before_sending_a_new_init(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.begin(act_id)  # an earlier attempt sent its init, then its close failed
    world.agents.statuses[act_id] = status(False, ok=True)
    assert world.activation.run(act_id, "h1").outcome == "up"
    assert world.agents.init_calls == []


# --- v1: hold the host ---------------------------------------------------------------------------


def test_v1_unknown_holds_the_host_and_no_second_init_is_sent(world: World) -> None:
    act_id = world.out_host()
    world.agents.init_errors["h1"] = UNSEEN
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.failed) == ("outcome_unknown", False)
    h1 = world.host()
    assert h1.init_hold_until == T0 + timedelta(seconds=INIT_MAX_S)
    assert world.agents.status_calls == []
    assert_not_charged(world)
    assert "init_held" in world.events()

    # The tick's decision and an admin's activation both respect the hold, and say why.
    del world.agents.init_errors["h1"]
    world.clock.advance(INIT_MAX_S / 2)
    report = good_report("h1", world.clock())
    world.agents.reports["h1"] = report
    decision = decide(
        h1, assess(report, CLUSTER, world.clock(), MAX_AGE_S), Trigger.MANUAL, now=world.clock()
    )
    assert decision.code == Skip.INIT_OUTCOME_UNKNOWN.value
    assert "no new init before" in decision.detail
    world.out_host(activation_id="act-2")
    assert world.activation.run("act-2", "h1").outcome == Skip.INIT_OUTCOME_UNKNOWN.value
    assert len(world.agents.init_calls) == 1

    # Once the longest init is over, the host comes back.
    world.clock.advance(INIT_MAX_S)
    world.agents.reports["h1"] = good_report("h1", world.clock())
    world.out_host(activation_id="act-3")
    world.agents.reports["h1"] = good_report("h1", world.clock())
    assert world.activation.run("act-3", "h1").outcome == "up"
    assert len(world.agents.init_calls) == 2


def test_give_up_of_an_initializing_host_holds_it(world: World) -> None:
    act_id = world.out_host()
    fence = world.begin(act_id)
    with world.db.transaction() as conn:
        world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    assert world.activation.give_up(act_id, "h1", "SoftTimeLimitExceeded: ") is True
    assert world.host().init_hold_until == T0 + timedelta(seconds=INIT_MAX_S)
    assert_not_charged(world)


# --- busy ------------------------------------------------------------------------------------------


def test_a_busy_agent_is_a_hold_not_a_failure(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.init_errors["h1"] = AgentBusy("busy", activation_id="other", fence=9)
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.failed) == ("agent_busy", False)
    h1 = world.host()
    assert (h1.status, h1.reason) == (S.NON_OPERATIONAL, "kvm_not_running")  # back as it was
    assert world.act(act_id).state == "abandoned"
    assert_not_charged(world)


# --- stale holders: checked in Redis and PostgreSQL right before each agent call ------------------


def test_a_holder_reaped_in_postgresql_with_its_redis_lock_still_held_calls_no_agent(world: World) -> None:
    act_id = world.out_host()
    failpoint = world.activation.hosts.failpoints

    def reaped(target: Target, now: datetime) -> Report:
        later = world.clock() + timedelta(seconds=100)
        with world.db.transaction() as conn:
            world.repos.activations.reap(conn, now=later, queued_ttl_s=-100, running_ttl_s=-100)
        return good_report(target.host_id, world.clock())

    world.agents.get_report = reaped  # type: ignore[method-assign]
    assert world.activation.run(act_id, "h1").outcome == "stale_fence"
    assert world.agents.init_calls == [] and failpoint == ""


def test_a_lock_lost_while_asking_stops_asking_and_holds_nothing_it_cannot(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.init_errors["h1"] = UNSEEN

    def lost_after_first_ask(seconds: float) -> None:
        world.clock.advance(seconds)
        world.redis.delete(world.host_lock())

    world.activation.hosts.wait = replace(world.activation.hosts.wait, sleep=lost_after_first_ask)
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "outcome_unknown"
    assert world.agents.status_calls == []  # the guard stopped the first status call
    assert world.host().status is S.NON_OPERATIONAL
    assert_not_charged(world)
