"""An activation is a record advanced by short steps: sent inits, unseen outcomes, busy agents.

None of these is a failed init or charged to the host; a v2 agent is asked how its init went (a
later step each time, never a waiting process), a v1 agent's host is held by its ``sent``
record so that no second init overlaps one that may still run, and repeated unknown outcomes
back the host off without a charge.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from autorecovery.adapters.agents import InitStatus, Target
from autorecovery.services.activation.host_init import InitWait
from autorecovery.settings import Settings
from models.assessment import assess
from models.domain import HostStatus, Report, Trigger
from models.errors import AgentBusy, InitOutcomeUnknown
from models.policy import Skip, decide
from tests.fakes.ports import good_report
from tests.unit.activation.conftest import CLUSTER, INIT_MAX_S, MAX_AGE_S, T0, World, make_world

S = HostStatus
UNSEEN = InitOutcomeUnknown("h1: ReadTimeout after 20s")


def speaks(world: World, protocol: int, host_id: str = "h1") -> None:
    world.agents.reports[host_id] = replace(world.agents.reports[host_id], protocol=protocol)


def status(running: bool, ok: bool | None = None, reason: str | None = None) -> InitStatus:
    return InitStatus("act-1", 1, running=running, ok=ok, reason=reason, detail=reason)


def assert_not_charged(world: World) -> None:
    h1 = world.host()
    assert (h1.failures, h1.quarantined_at) == (0, None)
    assert "quarantined" not in world.events()


def assert_not_backed_off(world: World) -> None:
    assert world.host().next_attempt_at is None
    assert "backoff" not in world.events()


# --- v2: sent at once, asked by later steps ------------------------------------------------------


def test_v2_init_is_sent_at_once_and_a_later_step_brings_the_host_up(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.status_script[act_id] = [status(True), None, status(False, ok=True)]
    seen: list[str] = []
    set_status = world.repos.hosts.set_status

    def watch(conn: Any, host_id: str, status_: str, *a: Any, **kw: Any) -> bool:
        seen.append(status_)
        return bool(set_status(conn, host_id, status_, *a, **kw))

    world.repos.hosts.set_status = watch  # type: ignore[attr-defined]
    first = world.activation.run(act_id, "h1", "task-1")
    assert (first.outcome, first.check_in_s) == ("sent", 1.0)  # the step ends; nobody waits
    act = world.act(act_id)
    assert (act.state, act.answer, act.protocol) == ("sent", "running", 2)
    assert act.deadline_at == T0 + timedelta(seconds=INIT_MAX_S)
    assert world.host().status is S.INITIALIZING
    out = world.activate(act_id)
    assert out.outcome == "up"
    assert seen == ["initializing", "up"]  # initializing all along while asking
    assert len(world.agents.init_calls) == 1
    assert len(world.agents.status_calls) == 3
    assert [e for e in world.events() if e == "init_outcome_asked"] == ["init_outcome_asked"]
    assert world.host().status is S.UP
    with world.db.transaction() as conn:
        steps = world.repos.activations.steps(conn, [act_id])
    assert [(s.step, s.task_id, s.outcome) for s in steps][:2] == [
        ("send", "task-1", "sent"),
        ("send", "send-task", "sent"),  # a redelivered first step sends nothing, asks again
    ]
    assert [(s.step, s.outcome) for s in steps][-1] == ("check", "up")


def test_v2_done_failed_is_the_agents_failure(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.status_script[act_id] = [status(False, ok=False, reason="storage_domain_unreachable")]
    out = world.activate(act_id)
    assert (out.outcome, out.failed) == ("failed", True)
    h1 = world.host()
    assert (h1.status, h1.reason) == (S.NON_OPERATIONAL, "storage_domain_unreachable")
    assert h1.failures == 1  # a real result, seen: it counts


def test_v2_unknown_until_its_deadline_is_abandoned_uncharged_and_backed_off(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.init_errors["h1"] = UNSEEN
    world.agents.statuses[act_id] = status(True)
    out = world.activate(act_id)
    assert (out.outcome, out.failed) == ("outcome_unknown", False)
    assert world.clock() >= T0 + timedelta(seconds=INIT_MAX_S)
    # Asked until its deadline, less often the longer it ran (see the hung init's test below).
    assert 3 <= len(world.agents.status_calls) < INIT_MAX_S / 2
    assert len(world.agents.init_calls) == 1
    act, h1 = world.act(act_id), world.host()
    assert act.state == "abandoned"
    assert (h1.status, h1.reason, h1.init_hold_until) == (S.NON_OPERATIONAL, "activation_failed", None)
    assert_not_charged(world)
    assert h1.next_attempt_at is not None and h1.next_attempt_at > world.clock()


def test_a_hung_v2_init_is_asked_less_often_as_it_runs_and_closed_at_its_deadline() -> None:
    """Issue 14: a hung agent costs a few check steps, not one every poll until its deadline.

    The first check comes ``poll_s`` after the send (a fast init is seen at once); then the wait
    is half the time the init has run, never above ``poll_max_s``, and the last check lands on
    the deadline, where the activation is abandoned as before.
    """
    world = make_world(init_max_s=120.0)
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.statuses[act_id] = status(True)  # accepted, never ends
    asked: list[float] = []
    init_status = world.agents.init_status

    def timed(target: Target, activation_id: str) -> InitStatus | None:
        asked.append((world.clock() - T0).total_seconds())
        return init_status(target, activation_id)

    world.agents.init_status = timed  # type: ignore[method-assign]
    out = world.activate(act_id)
    assert (out.outcome, out.failed) == ("outcome_unknown", False)
    assert asked[0] == 1.0  # poll_s after the send
    gaps = [b - a for a, b in zip(asked, asked[1:], strict=False)]
    assert all(1.0 - 1e-6 <= g <= 15.0 + 1e-6 for g in gaps)  # poll_s .. poll_max_s
    assert gaps[:6] == sorted(gaps[:6])  # backing off
    assert max(gaps) == 15.0
    assert asked[-1] == 120.0  # closed at its deadline, not a poll later
    assert len(asked) <= 16  # against 120 at one check a second
    world.redis.close()


def test_init_wait_backs_off_from_poll_s_to_poll_max_s_and_stops_at_the_deadline() -> None:
    wait = InitWait(init_max_s=120.0, poll_s=2.0, poll_max_s=15.0)
    assert wait.next_poll_s(running_s=0.0, left_s=120.0) == 2.0
    assert wait.next_poll_s(running_s=10.0, left_s=110.0) == 5.0
    assert wait.next_poll_s(running_s=80.0, left_s=40.0) == 15.0
    assert wait.next_poll_s(running_s=115.0, left_s=5.0) == 5.0  # lands on the deadline
    assert wait.next_poll_s(running_s=120.0, left_s=0.0) == 2.0  # never a zero countdown


def test_a_resumed_v2_activation_asks_before_sending_a_new_init(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.begin(act_id)  # an earlier attempt sent its init, then its worker died
    world.agents.statuses[act_id] = status(False, ok=True)
    assert world.activate(act_id).outcome == "up"
    assert world.agents.init_calls == []


def test_a_step_whose_lock_another_holds_asks_nothing_and_writes_nothing(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.statuses[act_id] = status(True)
    assert world.activation.run(act_id, "h1").outcome == "sent"
    other = world.hold(world.host_lock(), owner=act_id)  # a duplicate delivery of the next step
    out = world.activation.check(act_id, "h1")
    assert (out.outcome, out.check_in_s) == ("sent", 1.0)
    assert world.agents.status_calls == []
    assert world.act(act_id).state == "sent"
    other.release()
    world.agents.statuses[act_id] = status(False, ok=True)
    assert world.activate(act_id).outcome == "up"


# --- v1: the record holds the host ---------------------------------------------------------------


def test_v1_unknown_holds_the_host_by_its_record_and_no_second_init_is_sent(world: World) -> None:
    act_id = world.out_host()
    world.agents.init_errors["h1"] = UNSEEN
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.failed) == ("sent", False)
    act, h1 = world.act(act_id), world.host()
    assert (act.state, act.answer, act.protocol) == ("sent", "unknown", 1)
    assert h1.status is S.INITIALIZING
    assert world.agents.status_calls == []
    assert_not_charged(world)

    # The tick's decision and an admin's activation both respect the hold, and say why.
    del world.agents.init_errors["h1"]
    world.clock.advance(INIT_MAX_S / 2)
    report = good_report("h1", world.clock())
    world.agents.reports["h1"] = report
    decision = decide(
        world.host(), assess(report, CLUSTER, world.clock(), MAX_AGE_S), Trigger.MANUAL, now=world.clock()
    )
    assert decision.code == Skip.ACTIVATION_IN_FLIGHT.value
    with world.db.transaction() as conn:
        assert (
            world.repos.activations.create_many(
                conn,
                [("act-2", "h1")],
                trigger="manual",
                actor="alice",
                now=world.clock(),
                statuses=[s.value for s in S],
                reason="test",
            )
            == []
        )
    assert world.activation.check(act_id, "h1").outcome == "sent"  # still held
    assert len(world.agents.init_calls) == 1

    # Once the longest init is over, the record closes: out, uncharged, backed off.
    world.clock.advance(INIT_MAX_S)
    out = world.activation.check(act_id, "h1")
    assert (out.outcome, out.failed, out.check_in_s) == ("outcome_unknown", False, None)
    assert world.host().status is S.NON_OPERATIONAL
    assert_not_charged(world)
    assert "backoff" in world.events()
    world.out_host(activation_id="act-3", trigger="manual")
    world.agents.reports["h1"] = good_report("h1", world.clock())
    assert world.activate("act-3").outcome == "up"
    assert len(world.agents.init_calls) == 2


def test_defect_3_with_default_settings_the_v1_hold_outlasts_the_call_that_missed_its_answer() -> None:
    defaults = Settings.model_construct()
    world = make_world(init_max_s=defaults.init_max_s)
    act_id = world.out_host()

    def slow_unseen(target: Target, fence: int, activation_id: str) -> Any:
        world.clock.advance(defaults.init_timeout_s)  # the call blocks for its whole timeout
        raise UNSEEN

    world.agents.init = slow_unseen  # type: ignore[method-assign]
    assert world.activation.run(act_id, "h1").outcome == "sent"
    act = world.act(act_id)
    assert act.deadline_at == world.clock() + timedelta(seconds=defaults.init_max_s)
    assert act.past_deadline is False
    world.clock.advance(defaults.init_max_s - 1)
    assert world.activation.check(act_id, "h1").outcome == "sent"  # still held


def test_defect_7_repeated_unknown_outcomes_back_a_v1_host_off_like_failures_uncharged(
    world: World,
) -> None:
    delays = []
    for n in range(1, 4):
        act_id = world.out_host(activation_id=f"act-{n}")
        world.agents.reports["h1"] = good_report("h1", world.clock())
        world.agents.init_errors["h1"] = UNSEEN  # its init always outlasts the timeout
        assert world.activate(act_id).outcome == "outcome_unknown"
        h1 = world.host()
        assert h1.next_attempt_at is not None
        delays.append((h1.next_attempt_at - world.clock()).total_seconds())
        with world.db.transaction() as conn:
            entries = world.repos.audit.query(conn, object_id="h1", event="backoff", limit=1)
        assert entries[0]["reason"] == f"{n} unknown init outcome(s) in a row"
        assert entries[0]["details"]["charged"] is False
        report = good_report("h1", world.clock())
        decision = decide(
            h1, assess(report, CLUSTER, world.clock(), MAX_AGE_S), Trigger.AUTO, now=world.clock()
        )
        assert decision.code == Skip.BACKOFF.value  # the tick sends no new init yet
        world.clock.advance(delays[-1])
    assert delays[0] < delays[2]  # it grows as failures' backoff does
    assert_not_charged(world)


def test_give_up_of_an_initializing_host_holds_it(world: World) -> None:
    act_id = world.out_host()
    fence = world.begin(act_id)
    with world.db.transaction() as conn:
        world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    assert world.activation.give_up(act_id, "h1", "SoftTimeLimitExceeded: ") is True
    assert world.host().init_hold_until == T0 + timedelta(seconds=INIT_MAX_S)
    assert_not_charged(world)
    assert_not_backed_off(world)


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
    assert_not_backed_off(world)


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


def test_a_sent_record_reaped_past_its_deadline_is_closed_by_nobody_else(world: World) -> None:
    act_id = world.out_host()
    speaks(world, 2)
    world.agents.statuses[act_id] = status(True)
    assert world.activation.run(act_id, "h1").outcome == "sent"
    world.clock.advance(INIT_MAX_S + 1)
    with world.db.transaction() as conn:
        reaped = world.repos.activations.reap(conn, now=world.clock(), queued_ttl_s=60, running_ttl_s=0)
    assert [r["was"] for r in reaped] == ["sent"]
    h1 = world.host()
    assert (h1.status, h1.fence) == (S.NON_OPERATIONAL, 2)  # fence bumped past the holder's
    world.agents.statuses[act_id] = status(False, ok=True)
    assert world.activation.check(act_id, "h1").outcome == "duplicate"
    assert world.host().status is S.NON_OPERATIONAL


def test_a_redelivered_send_step_takes_over_the_checks_and_the_first_chain_ends(world: World) -> None:
    """One chain of checks per activation: the step that sends a check names it the only one.

    A first step delivered again after it recorded ``sent`` (its worker died before the ack)
    sends a check of its own; the first step's check, if it was sent after all, is superseded
    and writes nothing, so an activation is never asked about twice per poll for good.
    """
    act_id = world.out_host()
    speaks(world, 2)
    first = world.activation.run(act_id, "h1", act_id)
    again = world.activation.run(act_id, "h1", act_id)
    assert (first.outcome, again.outcome) == ("sent", "sent")
    assert None not in (first.next_check_id, again.next_check_id)
    assert first.next_check_id != again.next_check_id
    assert world.act(act_id).check_task_id == again.next_check_id
    with world.db.transaction() as conn:
        steps = len(world.repos.activations.steps(conn, [act_id]))
    superseded = world.activation.check(act_id, "h1", first.next_check_id)
    assert (superseded.outcome, superseded.check_in_s) == ("duplicate", None)
    assert world.agents.status_calls == []  # the agent was not asked
    with world.db.transaction() as conn:
        assert len(world.repos.activations.steps(conn, [act_id])) == steps  # nothing written
    assert world.activation.check(act_id, "h1", again.next_check_id).outcome == "up"
