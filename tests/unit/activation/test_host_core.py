"""The fenced core on host activations: busy locks, give-up, lost locks, a failing close."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from autorecovery.adapters.agents import InitResult, Target
from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.locks import holder_token
from autorecovery.services.activation import LockBusyRetry
from models.domain import HostStatus, Report
from models.errors import StoreUnavailable
from tests.fakes.ports import good_report
from tests.unit.activation.conftest import LOCK_TTL_S, World, make_world

S = HostStatus


# --- a duplicate delivery never closes a live activation (defect 1) -------------------------------


def test_a_duplicate_that_finds_the_lock_busy_waits_and_its_give_up_leaves_the_live_run(world: World) -> None:
    act_id = world.out_host()
    fence = world.begin(act_id)  # delivery A began and holds the lock, mid-init
    with world.db.transaction() as conn:
        world.repos.hosts.set_status(conn, "h1", "initializing", None, "A", world.clock(), fence=fence)
    holder = world.hold(world.host_lock(), owner=act_id)

    with pytest.raises(LockBusyRetry):
        world.activation.run(act_id, "h1")  # delivery B
    closed = world.activation.give_up(act_id, "h1", "retries exhausted: lock busy")

    act, h1 = world.act(act_id), world.host()
    assert (act.state, act.fence, closed) == ("sending", fence, False)
    assert (h1.status, h1.fence) == (S.INITIALIZING, fence)
    assert "activation_abandoned" not in world.events()
    assert holder_token(world.redis, world.host_lock()) == holder.token
    holder.release()


def test_a_duplicate_of_a_queued_activation_whose_twin_has_the_lock_does_not_skip_it(world: World) -> None:
    # Delivery A took the lock but has not begun yet: B must not close the activation as skipped.
    act_id = world.out_host()
    holder = world.hold(world.host_lock(), owner=act_id)
    with pytest.raises(LockBusyRetry):
        world.activation.run(act_id, "h1")
    assert world.act(act_id).state == "queued"
    assert "activation_skipped" not in world.events()
    holder.release()
    assert world.activation.run(act_id, "h1").outcome == "up"


def test_give_up_with_a_free_lock_closes_abandoned_bumps_the_fence_and_charges_nothing(world: World) -> None:
    act_id = world.out_host()
    fence = world.begin(act_id)  # its worker died
    with world.db.transaction() as conn:
        world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    closed = world.activation.give_up(act_id, "h1", "retries exhausted: redis down")
    act, h1 = world.act(act_id), world.host()
    assert (act.state, act.outcome, closed) == ("abandoned", "gave_up", True)
    assert (h1.status, h1.reason, h1.fence) == (S.NON_OPERATIONAL, "activation_failed", fence + 1)
    assert (h1.failures, h1.next_attempt_at) == (0, None)
    assert holder_token(world.redis, world.host_lock()) is None


# --- the skip of a busy lock is audited only when it closed the activation (defect 2) -------------


def test_a_busy_skip_that_closed_nothing_audits_nothing(world: World) -> None:
    act_id = world.out_host()
    holder = world.hold(world.host_lock(), owner="another-activation")
    finish = world.repos.activations.finish

    def begun_meanwhile(conn: Any, activation_id: str, **kw: Any) -> bool:
        world.repos.activations.begin(conn, activation_id, world.clock())  # another delivery began
        return bool(finish(conn, activation_id, **kw))

    world.repos.activations.finish = begun_meanwhile  # type: ignore[attr-defined]
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "duplicate"
    assert world.act(act_id).state == "sending"
    assert "activation_skipped" not in world.events()
    holder.release()


def test_a_busy_lock_held_by_another_activation_is_a_skip_and_audited(world: World) -> None:
    act_id = world.out_host()
    holder = world.hold(world.host_lock(), owner="another-activation")
    assert world.activation.run(act_id, "h1").outcome == "lock_busy"
    assert world.act(act_id).state == "skipped"
    assert world.events().count("activation_skipped") == 1
    holder.release()


# --- a lost lock: no side effect, nobody charged (defect 3, and the mutation of 11) -------------


def lose_lock_during_recheck(world: World) -> None:
    original = world.agents.get_report

    def report_then_lock_lost(target: Target, now: datetime) -> Report:
        world.redis.delete(world.host_lock(target.host_id))  # a Redis failover, say
        return original(target, now)

    world.agents.get_report = report_then_lock_lost  # type: ignore[method-assign]


def test_a_lock_lost_before_init_sends_nothing_flips_nothing_and_charges_nobody(world: World) -> None:
    act_id = world.out_host()
    lose_lock_during_recheck(world)
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "lock_lost"
    assert world.agents.init_calls == []
    h1 = world.host()
    assert (h1.status, h1.reason) == (S.NON_OPERATIONAL, "kvm_not_running")
    assert (h1.failures, h1.next_attempt_at, h1.quarantined_at) == (0, None, None)
    assert (world.act(act_id).state, world.act(act_id).outcome) == ("abandoned", "lock_lost")
    assert world.events()[-2:] == ["activation_started", "activation_abandoned"]


def test_a_lock_lost_between_initializing_and_init_puts_the_host_back(world: World) -> None:
    act_id = world.out_host()
    set_status = world.repos.hosts.set_status

    def then_lose(conn: Any, host_id: str, status: str, *a: Any, **kw: Any) -> bool:
        if status == "initializing":
            world.redis.delete(world.host_lock(host_id))
        return bool(set_status(conn, host_id, status, *a, **kw))

    world.repos.hosts.set_status = then_lose  # type: ignore[attr-defined]
    assert world.activation.run(act_id, "h1").outcome == "lock_lost"
    assert world.agents.init_calls == []
    h1 = world.host()
    assert (h1.status, h1.reason, h1.failures) == (S.NON_OPERATIONAL, "kvm_not_running", 0)


def test_a_holder_that_lost_its_lock_and_was_reaped_writes_nothing(world: World) -> None:
    act_id = world.out_host()
    original = world.agents.get_report

    def reaped_meanwhile(target: Target, now: datetime) -> Report:
        world.redis.delete(world.host_lock(target.host_id))
        later = world.clock() + timedelta(seconds=100)
        with world.db.transaction() as conn:
            world.repos.activations.reap(conn, now=later, queued_ttl_s=-100, running_ttl_s=-100)
        return original(target, now)

    world.agents.get_report = reaped_meanwhile  # type: ignore[method-assign]
    before = world.events()
    assert world.activation.run(act_id, "h1").outcome == "stale_fence"
    assert (world.act(act_id).state, world.act(act_id).outcome) == ("abandoned", "abandoned")
    # Only the start and the reaper's entry: the stale holder wrote nothing after it.
    assert world.events() == [*before, "activation_started", "activation_abandoned"]
    assert world.agents.init_calls == []


def test_a_lock_that_expired_under_a_paused_step_stops_the_init() -> None:
    world = make_world(lock_ttl_s=0.3)
    act_id = world.out_host()
    original = world.agents.get_report

    def paused(target: Target, now: datetime) -> Report:
        time.sleep(0.5)  # a frozen process: the lock (never renewed) expires under the step
        return original(target, now)

    world.agents.get_report = paused  # type: ignore[method-assign]
    assert world.activation.run(act_id, "h1").outcome == "lock_lost"
    assert world.agents.init_calls == []
    world.redis.close()


# --- a busy lock is retried after its TTL (defect 5) ----------------------------------------------


def test_a_redelivery_waits_for_the_dead_holders_lock_to_expire(world: World) -> None:
    act_id = world.out_host()
    world.begin(act_id)
    world.hold(world.host_lock(), owner=act_id)  # its worker died holding the lock
    with pytest.raises(LockBusyRetry) as caught:
        world.activation.run(act_id, "h1")
    assert LOCK_TTL_S - 1 <= caught.value.retry_after_s <= LOCK_TTL_S
    world.redis.delete(world.host_lock())  # the TTL ran out
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, world.host().status) == ("up", S.UP)


# --- a PostgreSQL failure while closing does not re-run the init (defect 6) -----------------------


def test_a_store_failure_while_closing_retries_the_close_not_the_init(world: World) -> None:
    act_id = world.out_host()
    finish = world.repos.activations.finish
    failures = [StoreUnavailable("PostgreSQL failed: connection lost")]

    def flaky(conn: Any, activation_id: str, **kw: Any) -> bool:
        if kw["state"] == "done" and failures:
            raise failures.pop()
        return bool(finish(conn, activation_id, **kw))

    world.repos.activations.finish = flaky  # type: ignore[attr-defined]
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "up"
    assert world.agents.init_calls == [("h1", 1, act_id)]
    assert (world.host().status, world.act(act_id).state) == (S.UP, "done")


def test_an_init_failure_marks_the_outcome_failed_for_the_task(world: World) -> None:
    act_id = world.out_host()
    world.agents.init_results["h1"] = InitResult(ok=False, reason="kvm_not_running", detail="no kvm")
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.failed) == ("failed", True)
    assert world.activation.run("act-x", "h1").failed is False
    assert isinstance(world.agents, FakeAgentClient)


# --- defect 9: paths no test caught -------------------------------------------------------------


def test_a_close_whose_commit_succeeded_but_whose_answer_was_lost_is_recorded_once(world: World) -> None:
    """The retried close finds its own committed end: up, not a lost fence, written once."""
    act_id = world.out_host()
    finish = world.repos.activations.finish
    transaction = world.db.transaction
    closing: list[bool] = []

    def watched_finish(conn: Any, activation_id: str, **kw: Any) -> bool:
        closing.append(kw["state"] == "done")
        return bool(finish(conn, activation_id, **kw))

    @contextmanager
    def lossy_transaction() -> Iterator[Any]:
        with transaction() as conn:
            yield conn
        if closing == [True]:  # the close committed; the connection dies before it is told
            closing.append(False)
            raise StoreUnavailable("PostgreSQL failed: connection lost after COMMIT")

    world.repos.activations.finish = watched_finish  # type: ignore[attr-defined]
    world.db.transaction = lossy_transaction  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.failed) == ("up", False)
    assert world.events().count("activation_succeeded") == 1
    assert (world.host().status, world.act(act_id).state) == (S.UP, "done")
    assert world.agents.init_calls == [("h1", 1, act_id)]


def test_giving_up_before_initializing_puts_nothing_back_and_holds_nothing(world: World) -> None:
    """A give-up before the host was marked initializing: no init can run, so no hold; the host
    keeps its status and reason, and the fence moves past the abandoned holder's."""
    act_id = world.out_host()
    fence = world.begin(act_id)  # its holder began, then died before initializing
    assert world.activation.give_up(act_id, "h1", "SoftTimeLimitExceeded: ") is True
    h1 = world.host()
    assert (h1.status, h1.reason, h1.detail) == (S.NON_OPERATIONAL, "kvm_not_running", "kvm off")
    assert (h1.init_hold_until, h1.failures, h1.fence) == (None, 0, fence + 1)
    assert "init_held" not in world.events() and "status_changed" not in world.events()[-3:]
    assert world.act(act_id).state == "abandoned"


# --- a retried activation counts from the host's status before its first attempt -------------------


@pytest.mark.parametrize("agent_ran_it", [False, True], ids=["sent-again", "asked"])
def test_a_host_back_from_error_through_a_retried_activation_has_its_charges_cleared(
    world: World, agent_ran_it: bool
) -> None:
    act_id = world.out_host()
    with world.db.transaction() as conn:  # its error period (failed VM launches) is over
        assert world.repos.hosts.set_status(conn, "h1", "up", None, None, world.clock())
        until = world.clock() + timedelta(seconds=1)
        assert world.repos.vmruns.enter_error(conn, ["h1"], until, world.clock(), "VMs failed") == ["h1"]
    world.clock.advance(2)
    world.agents.reports["h1"] = good_report("h1", world.clock())
    world.agents.reports["h1"] = replace(world.agents.reports["h1"], protocol=2)
    start_init = world.agents.start_init

    def worker_lost(target: Target, fence: int, activation_id: str) -> InitResult | None:
        if agent_ran_it:
            start_init(target, fence, activation_id)
        raise SystemExit("worker lost mid-send")  # the first attempt dies after initializing

    world.agents.start_init = worker_lost  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        world.activation.run(act_id, "h1")
    assert (world.act(act_id).state, world.host().status) == ("sending", S.INITIALIZING)
    world.agents.start_init = start_init  # type: ignore[method-assign]

    assert world.activate(act_id).outcome == "up"  # the retried attempt
    with world.db.transaction() as conn:
        [entry] = world.repos.audit.query(conn, object_id="h1", event="charges_cleared", limit=5)
    assert entry["reason"] == "recovered_from_error"


def test_an_activation_is_queued_until_it_begins(world: World) -> None:
    act_id = world.out_host()
    assert world.activation.is_queued(act_id)
    world.begin(act_id)
    assert not world.activation.is_queued(act_id)
    assert not world.activation.is_queued("no-such-activation")
