"""The tick's housekeeping over fakes: leases on the database's clock, re-sends, fence pushes."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import Repos
from autorecovery.services.fleet import FleetService, HostSpec
from autorecovery.services.housekeeping import HousekeepingResult
from autorecovery.services.monitoring import TickConfig, TickResult
from models.domain import Cluster
from models.safety import CapPolicy
from tests.fakes import FixedClock, MemoryDatabase, RecordingEnqueuer, fake_container, memory_repos
from tests.fakes.ports import RecordingCheckSender, good_report

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)
CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
TICK = TickConfig(
    batch_size=10,
    report_max_age_s=30.0,
    tick_interval_s=10.0,
    queued_ttl_s=60.0,
    reap_running_after_s=70.0,
    caps=CapPolicy(cluster_share=1.0, fleet_max=1000),
    quiet_period=False,
    resend_after_s=20.0,
    max_resends=2,
)


@dataclass
class Run:
    """One interval's housekeeping run and tick: their counts read as one."""

    housekeeping: HousekeepingResult
    tick: TickResult

    def __getattr__(self, name: str) -> Any:
        source = self.housekeeping if hasattr(self.housekeeping, name) else self.tick
        return getattr(source, name)


@dataclass
class World:
    """One database (with its own clock) and services whose clocks a test may skew."""

    db: Any
    repos: Repos
    db_clock: FixedClock
    agents: FakeAgentClient
    enqueue: RecordingEnqueuer
    checks: RecordingCheckSender

    def services(self, cfg: TickConfig = TICK) -> Any:
        clock = FixedClock(self.db_clock())
        return fake_container(self.db, clock, self.agents, self.enqueue, tick=cfg, enqueue_check=self.checks)

    def tick(self, skew: timedelta = timedelta(0), cfg: TickConfig = TICK) -> Run:
        """A housekeeping run, then a tick, as beat sends them each interval."""
        clock = FixedClock(self.db_clock() + skew)
        services = fake_container(
            self.db, clock, self.agents, self.enqueue, tick=cfg, enqueue_check=self.checks
        )
        return Run(services.housekeeping.run(), services.monitoring.tick())

    def fleet(self, skew: timedelta = timedelta(0)) -> FleetService:
        clock = FixedClock(self.db_clock() + skew)
        return fake_container(self.db, clock, self.agents, self.enqueue).fleet

    def later(self, seconds: float, *fresh: str) -> None:
        """Time passes (on every machine alike); the named hosts report again."""
        self.db_clock.advance(seconds)
        for h in fresh:
            self.agents.reports[h] = good_report(h, self.db_clock() - timedelta(seconds=1))

    def out(self, host_id: str) -> None:
        with self.db.transaction() as conn:
            self.repos.hosts.set_status(
                conn, host_id, "non_operational", "kvm_not_running", "x", self.db_clock()
            )

    def act(self, activation_id: str) -> Any:
        with self.db.transaction() as conn:
            return self.repos.activations.get(conn, activation_id)

    def host_row(self, host_id: str) -> dict[str, Any]:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        pending = self.db.state.hosts[host_id]["agent_fence_pending"]
        return {**loaded.state, "fence": loaded.host.fence, "pending": pending}

    def audit(self, event: str) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            return list(self.repos.audit.query(conn, event=event))


@pytest.fixture
def w() -> World:
    db_clock = FixedClock(T0)
    memory = MemoryDatabase(clock=db_clock)
    world = World(
        memory, memory_repos(memory), db_clock, FakeAgentClient(), RecordingEnqueuer(), RecordingCheckSender()
    )
    fleet = world.fleet()
    fleet.register_cluster(CLUSTER, "admin")
    fleet.register_hosts([HostSpec(h, "c1", f"http://{h}") for h in ("h1", "h2")], "admin")
    return world


# === defect 4: leases on PostgreSQL's clock =====================================================


def test_a_manual_activation_queued_by_a_machine_minutes_behind_is_not_reaped(w: World) -> None:
    w.out("h1")
    activation_id = w.fleet(skew=-SKEW).request_activation("h1", "alice")
    assert w.tick().reaped == 0
    assert w.act(activation_id).state == "queued"


def test_a_tick_on_a_machine_minutes_ahead_reaps_no_live_work(w: World) -> None:
    w.out("h1")
    w.out("h2")
    queued = w.fleet().request_activation("h1", "alice")
    running = w.fleet().request_activation("h2", "alice")
    with w.db.transaction() as conn:  # a worker whose clock is minutes behind begins it
        assert w.repos.activations.begin(conn, running, T0 - SKEW) == 1
    assert w.tick(skew=SKEW).reaped == 0
    assert (w.act(queued).state, w.act(running).state) == ("queued", "sending")
    # The leases do run out on the database's clock, whatever the tick's skew.
    w.later(71)
    assert w.tick(skew=-SKEW).reaped == 2
    assert (w.act(queued).state, w.act(running).state) == ("abandoned", "abandoned")


# === defect 13: a queued activation whose message may be lost is sent again =====================


def test_a_queued_activation_not_started_in_time_is_sent_again_a_bounded_number_of_times(w: World) -> None:
    cfg = replace(TICK, queued_ttl_s=600.0)  # the bound, not the reaper, ends the re-sends here
    w.later(0, "h1")
    assert w.tick(cfg=cfg).enqueued == 1
    [(activation_id, host_id, trigger, actor)] = w.enqueue.calls
    w.later(10, "h1")
    assert w.tick(cfg=cfg).resent == 0  # no worker yet: not necessarily lost
    w.later(15, "h1")
    result = w.tick(cfg=cfg)
    assert result.resent == 1 and result.as_dict()["resent"] == 1
    assert w.enqueue.calls[-1] == (activation_id, host_id, trigger, actor)  # same task id
    w.later(5, "h1")
    assert w.tick(cfg=cfg).resent == 0  # the delay counts from the last send
    w.later(21, "h1")
    assert w.tick(cfg=cfg).resent == 1
    w.later(21, "h1")
    assert w.tick(cfg=cfg).resent == 0  # at most two re-sends
    assert len(w.enqueue.calls) == 3
    entries = w.audit("activation_resent")
    assert sorted(e["details"]["sends"] for e in entries) == [2, 3]
    assert {(e["object_id"], e["actor"], e["reason"]) for e in entries} == {
        ("h1", "auto", "not_started_in_time")
    }


def test_a_sent_activation_whose_check_was_lost_gets_one_again_and_the_lost_one_acts_no_more(
    w: World,
) -> None:
    """Issue 14: a lost check step is sent again instead of waiting out deadline + reap grace.

    The re-send takes the activation's check token: had the first message not been lost after
    all, it ends as a duplicate, writing nothing, and only one chain of checks goes on.
    """
    cfg = replace(TICK, resend_check_after_s=60.0)
    w.later(0, "h1")
    w.agents.reports["h1"] = replace(w.agents.reports["h1"], protocol=2)
    w.tick(cfg=cfg)
    [(activation_id, *_)] = w.enqueue.calls
    services = w.services(cfg)
    sent = services.activation.run(activation_id, "h1", activation_id)
    assert (sent.outcome, w.act(activation_id).check_task_id) == ("sent", sent.next_check_id)
    w.later(59, "h1")  # its check message is lost: no step since the send
    assert w.tick(cfg=cfg).checks_resent == 0
    w.later(2, "h1")
    result = w.tick(cfg=cfg)
    assert result.checks_resent == 1 and result.as_dict()["checks_resent"] == 1
    [(again_id, host_id, trigger, actor, task_id)] = w.checks.calls
    assert (again_id, host_id, trigger, actor) == (activation_id, "h1", "auto", "auto")
    assert task_id != sent.next_check_id and w.act(activation_id).check_task_id == task_id
    assert [e["details"]["activation_id"] for e in w.audit("activation_check_resent")] == [activation_id]
    w.later(30, "h1")
    assert w.tick(cfg=cfg).checks_resent == 0  # the re-send is a step: the delay starts again
    # The first message turns up late after all: superseded, it writes nothing.
    before = w.db.state.activation_steps[:]
    late = w.services(cfg).activation.check(activation_id, "h1", sent.next_check_id)
    assert (late.outcome, late.check_in_s) == ("duplicate", None)
    assert w.db.state.activation_steps == before
    assert w.services(cfg).activation.check(activation_id, "h1", task_id).outcome == "up"
    w.later(120, "h1")
    assert w.tick(cfg=cfg).checks_resent == 0  # closed: nothing to re-send
    assert len(w.checks.calls) == 1


def test_a_started_activation_is_never_sent_again(w: World) -> None:
    w.later(0, "h1")
    w.tick()
    [(activation_id, *_)] = w.enqueue.calls
    with w.db.transaction() as conn:
        w.repos.activations.begin(conn, activation_id, w.db_clock())
    w.later(30, "h1")
    assert w.tick().resent == 0
    assert len(w.enqueue.calls) == 1


def test_a_broker_failure_on_a_re_send_leaves_the_activation_queued(w: World) -> None:
    w.later(0, "h1")
    w.tick()
    [(activation_id, *_)] = w.enqueue.calls
    w.enqueue.failing = True
    w.later(25, "h1")
    assert w.tick().resent == 0
    assert w.act(activation_id).state == "queued"  # the reaper's TTL still bounds it


# === issue 9: an activation taken from its holder raises the agent's fence ======================


def begin_stuck(w: World, host_id: str) -> tuple[str, int]:
    w.out(host_id)
    activation_id = w.fleet().request_activation(host_id, "alice")
    with w.db.transaction() as conn:
        fence = w.repos.activations.begin(conn, activation_id, w.db_clock())
    assert fence is not None
    return activation_id, fence


def test_a_reaped_activation_raises_the_agents_fence_in_the_same_tick(w: World) -> None:
    _, fence = begin_stuck(w, "h1")
    w.later(71)
    result = w.tick()
    assert (result.reaped, result.fences_pushed, result.fences_failed) == (1, 1, 0)
    assert w.agents.fence_calls == [("h1", fence + 1)]
    assert w.agents.highest_fence["h1"] == fence + 1
    assert w.host_row("h1")["pending"] is False
    assert w.tick().fences_pushed == 0  # told once


def test_an_unreachable_agent_is_told_by_a_later_run_after_a_doubling_backoff(w: World) -> None:
    _, fence = begin_stuck(w, "h1")
    w.agents.unavailable.add("h1")
    w.later(71)
    result = w.tick()
    assert (result.fences_pushed, result.fences_failed) == (0, 1)
    assert w.host_row("h1")["pending"] is True
    w.later(10)  # one interval: asked again
    assert w.tick().fences_failed == 1
    w.agents.unavailable.discard("h1")
    w.later(10)  # two failures: it waits two intervals
    result = w.tick()
    assert (result.fences_pushed, result.fences_failed) == (0, 0)  # not asked yet
    w.later(10)
    assert w.tick().fences_pushed == 1
    assert w.agents.fence_calls == [("h1", fence + 1)]
    assert w.host_row("h1")["pending"] is False


def test_a_v1_agent_without_the_fence_route_clears_the_mark(w: World) -> None:
    begin_stuck(w, "h1")
    w.agents.raise_fence = lambda target, fence: None  # type: ignore[method-assign]
    w.later(71)
    assert w.tick().fences_pushed == 1
    assert w.host_row("h1")["pending"] is False


def test_giving_up_raises_the_agents_fence_on_the_next_tick(w: World) -> None:
    activation_id, fence = begin_stuck(w, "h1")
    services = fake_container(w.db, FixedClock(w.db_clock()), w.agents)
    services.activation.give_up(activation_id, "h1", "retries exhausted")
    services.close()
    assert w.host_row("h1")["fence"] == fence + 1 and w.host_row("h1")["pending"] is True
    assert w.tick().fences_pushed == 1
    assert w.agents.fence_calls == [("h1", fence + 1)]


def test_an_ordinary_begin_marks_nothing(w: World) -> None:
    begin_stuck(w, "h1")
    assert w.tick().fences_pushed == 0
    assert w.agents.fence_calls == []
    assert w.host_row("h1")["pending"] is False
