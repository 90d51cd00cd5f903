"""Safety in the services, over fakes: caps in the tick, pauses, the observer gate, backoff,
flap quarantine, the operator's controls, and the plan that shows them all."""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest

from autorecovery.adapters.agents import InitResult
from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import Repos
from autorecovery.services.activation import ActivationService, Outcome, RecoverySafety
from autorecovery.services.fleet import FleetService, HostSpec
from autorecovery.services.monitoring import MonitoringService, TickConfig, TickResult
from autorecovery.services.safety import SafetyService
from models.domain import Cluster, Host, HostStatus
from models.errors import InvalidInput, NotFound
from models.safety import FLEET, CapPolicy
from tests.fakes import FixedClock, MemoryDatabase, RecordingEnqueuer, memory_repos
from tests.fakes.ports import good_report

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
MAX_AGE_S = 30.0
S = HostStatus
C1 = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
C2 = replace(C1, id="c2")

#: Open by default: each test turns on the one protection it is about.
TICK = TickConfig(
    batch_size=3,
    report_max_age_s=MAX_AGE_S,
    tick_interval_s=10.0,
    queued_ttl_s=600.0,
    reap_running_after_s=700.0,
    caps=CapPolicy(cluster_share=1.0, fleet_max=1000),
    quiet_period=False,
)
SAFETY = RecoverySafety(backoff_base_s=10.0, backoff_max_s=3600.0, flap_limit=100, flap_window_s=3600.0)




@dataclass
class World:
    db: Any
    repos: Repos
    agents: FakeAgentClient
    clock: FixedClock
    enqueue: RecordingEnqueuer
    monitoring: MonitoringService
    activation: ActivationService
    fleet: FleetService
    safety: SafetyService
    redis_up: list[bool]

    def register(self, *host_ids: str, cluster: Cluster = C1) -> None:
        self.fleet.register_cluster(cluster, "admin")
        self.fleet.register_hosts([HostSpec(h, cluster.id, f"http://{h}") for h in host_ids], "admin")

    def healthy(self, *host_ids: str) -> None:
        for h in host_ids:
            self.agents.reports[h] = good_report(h, self.clock() - timedelta(seconds=1))

    def out(self, *host_ids: str) -> None:
        """Hosts non_operational from now, as a tick would leave them."""
        with self.db.transaction() as conn:
            for h in host_ids:
                assert self.repos.hosts.set_status(
                    conn, h, "non_operational", "kvm_not_running", "kvm is not running", self.clock()
                )

    def later(self, seconds: float, *fresh: str) -> None:
        """Move the clock; the named hosts report again."""
        self.clock.advance(seconds)
        self.healthy(*fresh)

    def queue(self, host_id: str, activation_id: str) -> str:
        with self.db.transaction() as conn:
            created = self.repos.activations.create_many(
                conn,
                [(activation_id, host_id)],
                trigger="auto",
                actor="auto",
                now=self.clock(),
                statuses=["non_operational", "non_responsive"],
                reason="test",
            )
        assert created == [(activation_id, host_id)]
        return activation_id

    def run_sent(self) -> list[Outcome]:
        """Run every activation the tick sent and not yet run, as the workers would."""
        outcomes = []
        for activation_id, host_id, _, _ in self.enqueue.calls:
            with self.db.transaction() as conn:
                act = self.repos.activations.get(conn, activation_id)
            if act is not None and act.state == "queued":
                outcomes.append(self.activation.run(activation_id, host_id))
        return outcomes

    def host(self, host_id: str) -> Host:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded[0]

    def decision(self, host_id: str) -> tuple[str, str]:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded[2]["last_decision"], loaded[2]["last_decision_detail"]

    def in_flight(self) -> dict[str, int]:
        with self.db.transaction() as conn:
            return dict(self.repos.safety.in_flight_by_cluster(conn))

    def observer(self) -> dict[str, Any]:
        with self.db.transaction() as conn:
            return dict(self.repos.safety.observer_state(conn))

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            return list(reversed(self.repos.audit.query(conn, limit=10_000, **filters)))

    def plan(self) -> dict[str, dict[str, Any]]:
        return {p["host_id"]: p for p in self.fleet.plan()}


Make = Callable[..., World]


@pytest.fixture
def make() -> Iterator[Make]:
    """Build a world with the tick settings and recovery limits a test needs."""
    clients: list[fakeredis.FakeRedis] = []

    def build(tick: TickConfig = TICK, safety: RecoverySafety = SAFETY) -> World:
        clock = FixedClock(T0)
        memory = MemoryDatabase(clock=clock)
        repos = memory_repos(memory)
        db: Any = memory  # stands in for autorecovery.adapters.store.Database
        agents = FakeAgentClient()
        redis_client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        clients.append(redis_client)
        enqueue = RecordingEnqueuer()
        redis_up = [True]
        return World(
            db=db,
            repos=repos,
            agents=agents,
            clock=clock,
            enqueue=enqueue,
            monitoring=MonitoringService(
                db, agents, enqueue, tick, clock, repos=repos, redis_ping=lambda: redis_up[0]
            ),
            activation=ActivationService(
                db,
                redis_client,
                agents,
                lock_ttl_s=40.0,
                report_max_age_s=MAX_AGE_S,
                clock=clock,
                repos=repos,
                safety=safety,
                rng=random.Random(5),
            ),
            fleet=FleetService(
                db, enqueue, report_max_age_s=MAX_AGE_S, clock=clock, repos=repos, caps=tick.caps
            ),
            safety=SafetyService(db, clock, repos=repos),
            redis_up=redis_up,
        )

    yield build
    for client in clients:
        client.close()


def capped(share: float | None = None, number: int | None = None, fleet: int = 1000) -> TickConfig:
    return replace(TICK, caps=CapPolicy(cluster_max=number, cluster_share=share, fleet_max=fleet))


# === caps ========================================================================================


def test_the_tick_admits_at_most_the_cap_oldest_first_and_says_why_the_rest_wait(make: Make) -> None:
    w = make(capped(share=0.25))
    hosts = ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"]
    w.register(*hosts)
    for h in ["h6", "h3", "h8", "h1", "h5", "h2", "h7", "h4"]:  # out one second apart
        w.out(h)
        w.clock.advance(1)
    w.healthy(*hosts)
    result = w.monitoring.tick()
    assert sorted(w.enqueue.hosts()) == ["h3", "h6"]  # the two that went out first
    assert (result.enqueued, result.capped) == (2, 6)
    assert result.decisions == {"activate": 2, "capped": 6}
    for h in ["h1", "h2", "h4", "h5", "h7", "h8"]:
        assert w.decision(h) == ("capped", "cluster c1 cap reached: 2/2 in flight")
    assert w.decision("h6")[0] == "activate"
    assert w.in_flight() == {"c1": 2}
    # The plan shows the same: activations in flight take the slots, the others wait.
    plan = w.plan()
    assert {h: p["code"] for h, p in plan.items()} == {
        **{h: "capped" for h in ["h1", "h2", "h4", "h5", "h7", "h8"]},
        "h3": "activation_in_flight",
        "h6": "activation_in_flight",
    }
    assert plan["h1"]["action"] == "skip"
    assert plan["h1"]["detail"] == "cluster c1 cap reached: 2/2 in flight"
    # And the host's view says why it is not back.
    assert w.fleet.describe("h8")["why_not_recovered"] == {
        "code": "capped",
        "detail": "cluster c1 cap reached: 2/2 in flight",
    }


def test_ticks_in_a_row_never_exceed_the_cap_and_the_next_wave_follows(make: Make) -> None:
    w = make(capped(number=2))
    hosts = [f"h{i}" for i in range(1, 7)]
    w.register(*hosts)
    for h in hosts:
        w.out(h)
        w.clock.advance(1)
    w.healthy(*hosts)
    waves: list[list[str]] = []
    for _ in range(6):
        before = len(w.enqueue.calls)
        w.monitoring.tick()
        assert sum(w.in_flight().values()) <= 2
        w.monitoring.tick()  # a second tick at once admits nobody more
        assert len(w.enqueue.calls) - before <= 2
        assert sum(w.in_flight().values()) <= 2
        waves.append(sorted(w.enqueue.hosts()[before:]))
        assert all(o.outcome == "up" for o in w.run_sent())
        w.later(10, *hosts)
    assert waves[:3] == [["h1", "h2"], ["h3", "h4"], ["h5", "h6"]]
    assert all(w.host(h).status is S.UP for h in hosts)


def test_the_fleet_cap_holds_across_clusters(make: Make) -> None:
    w = make(capped(share=1.0, fleet=3))
    w.register("a1", "a2", cluster=C1)
    w.register("b1", "b2", cluster=C2)
    for h in ["b1", "a1", "a2", "b2"]:
        w.out(h)
        w.clock.advance(1)
    w.healthy("a1", "a2", "b1", "b2")
    result = w.monitoring.tick()
    assert sorted(w.enqueue.hosts()) == ["a1", "a2", "b1"]
    assert result.capped == 1
    assert w.decision("b2") == ("capped", "fleet cap reached: 3/3 activations in flight")
    assert w.in_flight() == {"c1": 2, "c2": 1}


def test_a_manual_activation_counts_against_the_cap(make: Make) -> None:
    w = make(capped(number=1))
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    w.fleet.request_activation("h2", "alice")
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["h2"]  # the admin's only
    assert w.decision("h1") == ("capped", "cluster c1 cap reached: 1/1 in flight")


# === pauses ======================================================================================


def test_a_fleet_pause_stops_the_tick_and_ends_by_itself(make: Make) -> None:
    w = make()
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    pause = w.safety.pause(FLEET, "storage upgrade", "alice", T0 + timedelta(seconds=60))
    [entry] = w.audit(event="paused")
    assert (entry["object_type"], entry["object_id"], entry["actor"], entry["reason"]) == (
        "pause",
        FLEET,
        "alice",
        "storage upgrade",
    )
    assert entry["details"]["expires_at"] == "2026-11-24T12:01:00+00:00"
    result = w.monitoring.tick()
    assert w.enqueue.calls == []
    assert result.decisions == {"paused": 2}
    assert w.decision("h1") == ("paused", pause.describe())
    assert w.plan()["h1"]["code"] == "paused"
    assert w.fleet.describe("h1")["holds"]["pause"]["owner"] == "alice"
    w.later(59, "h1", "h2")
    w.monitoring.tick()
    assert w.enqueue.calls == []
    assert w.audit(event="pause_expired") == []
    w.later(1, "h1", "h2")  # the expiry: it ends by itself
    w.monitoring.tick()
    assert sorted(w.enqueue.hosts()) == ["h1", "h2"]
    [expired] = w.audit(event="pause_expired")
    assert (expired["object_id"], expired["actor"], expired["reason"]) == (FLEET, "auto", "storage upgrade")
    assert w.safety.state()["pauses"] == []


def test_a_cluster_pause_holds_only_its_cluster(make: Make) -> None:
    w = make()
    w.register("a1", cluster=C1)
    w.register("b1", cluster=C2)
    w.out("a1", "b1")
    w.healthy("a1", "b1")
    w.safety.pause("c1", "rack work", "bob", None)
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["b1"]
    assert w.decision("a1") == ("paused", "paused cluster c1 by bob: rack work")


def test_resume_lifts_a_pause_and_is_audited(make: Make) -> None:
    w = make()
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    w.safety.pause("c1", "rack work", "bob", None)
    w.monitoring.tick()
    assert w.enqueue.calls == []
    lifted = w.safety.resume("c1", "carol")
    assert (lifted.scope, lifted.owner) == ("c1", "bob")
    [entry] = w.audit(event="resumed")
    assert (entry["object_id"], entry["actor"], entry["reason"]) == ("c1", "carol", "rack work")
    w.later(10, "h1")
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["h1"]
    with pytest.raises(NotFound):
        w.safety.resume("c1", "carol")


def test_pause_refuses_an_unknown_cluster_or_a_past_expiry(make: Make) -> None:
    w = make()
    w.register("h1")
    with pytest.raises(NotFound):
        w.safety.pause("nope", "x", "alice", None)
    with pytest.raises(InvalidInput) as past:
        w.safety.pause(FLEET, "x", "alice", T0)
    assert past.value.field == "expires_at"
    with pytest.raises(NotFound):
        w.safety.resume(FLEET, "alice")
    assert w.audit(object_type="pause") == []
    assert w.safety.state()["pauses"] == []


def test_a_pause_stops_a_queued_automatic_activation_but_not_an_admins(make: Make) -> None:
    w = make()
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    auto = w.queue("h1", "auto-1")
    w.safety.pause(FLEET, "storm", "alice", None)
    out = w.activation.run(auto, "h1")
    assert out.outcome == "paused"
    assert w.agents.init_calls == []
    manual = w.fleet.request_activation("h2", "alice")
    assert w.activation.run(manual, "h2").outcome == "up"


# === the observer gate ===========================================================================


def test_the_first_tick_is_quiet_then_activation_starts(make: Make) -> None:
    w = make(replace(TICK, quiet_period=True))
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    assert w.observer()["last_full_tick_at"] is None
    first = w.monitoring.tick()
    assert w.enqueue.calls == []
    assert first.gate is not None and first.gate.startswith("quiet_period: ")
    assert w.decision("h1") == ("observer_unhealthy", first.gate)
    seen = w.observer()
    assert (seen["last_full_tick_at"], seen["gate"], seen["observed_hosts"]) == (T0, first.gate, 1)
    assert w.plan()["h1"]["code"] == "observer_unhealthy"
    assert w.fleet.describe("h1")["holds"]["observer_gate"] == first.gate
    assert w.safety.state()["gate"] == first.gate
    w.later(10, "h1")
    second = w.monitoring.tick()
    assert second.gate is None
    assert w.enqueue.hosts() == ["h1"]
    assert w.observer()["gate"] is None


def test_a_gated_tick_counts_its_held_decisions(make: Make) -> None:
    w = make(replace(TICK, quiet_period=True))
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    assert w.monitoring.tick().decisions == {"observer_unhealthy": 1}


def test_a_gap_in_ticks_brings_the_quiet_period_back(make: Make) -> None:
    w = make(replace(TICK, quiet_period=True))
    w.register("h1")
    w.monitoring.tick()  # the first: quiet, and nothing to activate anyway
    w.out("h1")
    w.later(31, "h1")  # over three tick intervals without a full tick
    assert w.monitoring.tick().gate is not None
    assert w.enqueue.calls == []
    w.later(30, "h1")  # exactly three intervals is no gap
    assert w.monitoring.tick().gate is None
    assert w.enqueue.hosts() == ["h1"]


def test_stale_monitoring_for_most_of_the_fleet_stops_automatic_activation(make: Make) -> None:
    w = make(replace(TICK, max_silent_share=0.5))
    w.register("h1", "s1", "s2", "s3", "m1")
    w.out("h1")
    w.healthy("h1")  # s1..s3 never answer; m1 is in maintenance and not counted
    w.fleet.set_maintenance("m1", "admin", None)
    result = w.monitoring.tick()
    assert (result.silent, result.gate) == (
        3,
        "monitoring_stale: 3 of 4 hosts have no fresh data (limit 50%); "
        "the collector or the network may be broken",
    )
    assert w.enqueue.calls == []
    assert w.decision("h1") == ("observer_unhealthy", result.gate)
    assert (w.observer()["silent_hosts"], w.observer()["observed_hosts"]) == (3, 4)
    assert w.plan()["h1"] | {"problems": []} == {
        "host_id": "h1",
        "cluster": "c1",
        "status": "non_operational",
        "next_status": "non_operational",
        "action": "skip",
        "code": "observer_unhealthy",
        "detail": result.gate,
        "problems": [],
    }
    # Two of the silent hosts answer again: one of four is under the limit.
    w.later(10, "h1", "s1", "s2")
    assert w.monitoring.tick().gate is None
    assert sorted(w.enqueue.hosts()) == ["h1", "s1", "s2"]


def test_redis_failing_stops_automatic_activation(make: Make) -> None:
    w = make()
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    w.redis_up[0] = False
    result = w.monitoring.tick()
    assert result.gate is not None and result.gate.startswith("redis_unavailable: ")
    assert w.enqueue.calls == []
    assert w.decision("h1")[0] == "observer_unhealthy"
    w.redis_up[0] = True
    w.later(10, "h1")
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["h1"]


# === backoff =====================================================================================


def within(seconds: float, low: float, high: float) -> bool:
    """``low <= seconds <= high``, give or take the microsecond a ``timedelta`` rounds to."""
    return low - 1e-6 <= seconds <= high + 1e-6


def fail_init(w: World, host_id: str) -> None:
    w.agents.init_results[host_id] = InitResult(ok=False, reason="kvm_not_running", detail="init failed")


def test_a_failed_automatic_activation_backs_off_then_retries(make: Make) -> None:
    w = make()
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    fail_init(w, "h1")
    w.monitoring.tick()
    [out] = w.run_sent()
    assert out.outcome == "failed"
    h1 = w.host("h1")
    assert h1.failures == 1
    assert h1.next_attempt_at is not None
    wait_s = (h1.next_attempt_at - T0).total_seconds()
    assert within(wait_s, 5.0, 10.0)  # [base/2, base] after one failure
    [entry] = w.audit(event="backoff")
    assert (entry["object_id"], entry["actor"], entry["reason"]) == ("h1", "auto", "1 failure(s) in a row")
    assert entry["details"]["failures"] == 1
    assert entry["details"]["delay_s"] == pytest.approx(wait_s, abs=1e-3)
    # Until then the tick skips the host with the reason backoff.
    w.clock.now = h1.next_attempt_at - timedelta(seconds=1)
    w.healthy("h1")
    result = w.monitoring.tick()
    assert result.decisions == {"backoff": 1}
    code, detail = w.decision("h1")
    assert code == "backoff" and detail.startswith("1 failed attempt(s) in a row; next attempt after ")
    assert w.plan()["h1"]["code"] == "backoff"
    assert w.fleet.describe("h1")["holds"]["failures"] == 1
    assert len(w.enqueue.calls) == 1
    # Then it tries again; a second failure waits longer.
    w.clock.now = h1.next_attempt_at
    w.healthy("h1")
    w.monitoring.tick()
    assert len(w.enqueue.calls) == 2
    second_at = w.clock()
    [out] = w.run_sent()
    assert out.outcome == "failed"
    h1 = w.host("h1")
    assert h1.failures == 2 and h1.next_attempt_at is not None
    assert within((h1.next_attempt_at - second_at).total_seconds(), 10.0, 20.0)
    # A success resets the backoff.
    del w.agents.init_results["h1"]
    w.later(20, "h1")
    w.monitoring.tick()
    [out] = w.run_sent()
    assert out.outcome == "up"
    h1 = w.host("h1")
    assert (h1.failures, h1.next_attempt_at) == (0, None)


def test_backoff_grows_and_is_bounded(make: Make) -> None:
    w = make(safety=replace(SAFETY, backoff_max_s=60.0))
    w.register("h1")
    w.out("h1")
    fail_init(w, "h1")
    waits = []
    for n in range(1, 7):
        w.healthy("h1")
        w.queue("h1", f"a{n}")
        started = w.clock()
        assert w.activation.run(f"a{n}", "h1").outcome == "failed"
        h1 = w.host("h1")
        assert h1.failures == n and h1.next_attempt_at is not None
        waits.append((h1.next_attempt_at - started).total_seconds())
        w.clock.now = h1.next_attempt_at
    for n, wait in enumerate(waits, start=1):
        ceiling = min(60.0, 10.0 * 2 ** (n - 1))
        assert within(wait, ceiling / 2, ceiling)


def test_neither_a_manual_failure_nor_a_skip_backs_off(make: Make) -> None:
    w = make()
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    fail_init(w, "h1")
    manual = w.fleet.request_activation("h1", "alice")
    assert w.activation.run(manual, "h1").outcome == "failed"
    w.agents.reports["h2"] = good_report("h2", T0, kvm=False)
    auto = w.queue("h2", "auto-2")
    assert w.activation.run(auto, "h2").outcome == "has_problems"
    for h in ("h1", "h2"):
        assert (w.host(h).failures, w.host(h).next_attempt_at) == (0, None)
    assert w.audit(event="backoff") == []


def test_an_admin_resets_the_backoff(make: Make) -> None:
    w = make()
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    fail_init(w, "h1")
    w.monitoring.tick()
    w.run_sent()
    next_at = w.host("h1").next_attempt_at
    assert next_at is not None
    was = w.safety.clear_holds("h1", "alice", quarantine=False)
    assert was == {
        "failures": 1,
        "next_attempt_at": next_at.isoformat(),
        "quarantined_at": None,
        "quarantine_reason": None,
    }
    [entry] = w.audit(event="backoff_reset")
    assert (entry["object_id"], entry["actor"], entry["reason"], entry["details"]) == (
        "h1",
        "alice",
        "admin",
        was,
    )
    w.later(1, "h1")
    w.monitoring.tick()
    assert len(w.enqueue.calls) == 2  # at once, not after the backoff
    with pytest.raises(NotFound):
        w.safety.clear_holds("ghost", "alice", quarantine=True)


# === flap quarantine =============================================================================


def fail_until_quarantined(w: World, host_id: str, times: int) -> None:
    fail_init(w, host_id)
    for _ in range(times):
        w.healthy(host_id)
        activation_id = w.queue(host_id, str(uuid.uuid4()))
        assert w.activation.run(activation_id, host_id).outcome == "failed"
        next_at = w.host(host_id).next_attempt_at
        assert next_at is not None
        w.clock.now = next_at


def test_k_failures_in_the_window_quarantine_the_host(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    w.out("h1")
    fail_until_quarantined(w, "h1", 2)
    assert w.host("h1").quarantined_at is None
    fail_until_quarantined(w, "h1", 1)
    h1 = w.host("h1")
    assert h1.quarantined_at is not None
    [entry] = w.audit(event="quarantined")
    assert (entry["object_id"], entry["actor"], entry["reason"]) == ("h1", "auto", "flapping")
    assert entry["details"]["detail"].startswith("3 automatic recoveries or failures within 3600s")
    # However long the wait and however clean the report, the tick leaves it alone.
    del w.agents.init_results["h1"]
    w.later(7200, "h1")
    result = w.monitoring.tick()
    assert w.enqueue.calls == []
    assert result.decisions == {"quarantined": 1}
    assert w.decision("h1")[0] == "quarantined"
    assert w.plan()["h1"]["code"] == "quarantined"
    holds = w.fleet.describe("h1")["holds"]
    assert holds["quarantined_at"] == h1.quarantined_at.isoformat()
    assert holds["quarantine_reason"].startswith("3 automatic recoveries or failures")


def test_k_automatic_recoveries_in_the_window_quarantine_the_host(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    # A newly registered host's first activation brings it up: no recovery, not counted.
    w.later(10, "h1")
    w.monitoring.tick()
    assert [o.outcome for o in w.run_sent()] == ["up"]
    for n in range(3):
        assert w.host("h1").quarantined_at is None, f"quarantined after {n} recoveries"
        w.out("h1")
        w.later(10, "h1")
        w.monitoring.tick()
        assert [o.outcome for o in w.run_sent()] == ["up"]
    h1 = w.host("h1")
    assert (h1.status, h1.quarantined_at) == (S.UP, T0 + timedelta(seconds=40))
    assert w.audit(event="quarantined")[0]["details"]["detail"].startswith("3 automatic recoveries")
    # Out again: it stays out until an admin looks.
    w.out("h1")
    w.later(10, "h1")
    w.monitoring.tick()
    assert len(w.enqueue.calls) == 4
    assert w.decision("h1")[0] == "quarantined"


def test_failures_before_the_first_up_count_but_the_first_up_does_not(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    w.out("h1")
    fail_until_quarantined(w, "h1", 2)  # two real failures
    del w.agents.init_results["h1"]
    w.healthy("h1")
    first_up = w.queue("h1", "first-up")
    assert w.activation.run(first_up, "h1").outcome == "up"
    assert w.host("h1").quarantined_at is None  # 2 counted, the first up is not
    w.out("h1")
    w.later(10, "h1")
    assert w.activation.run(w.queue("h1", "recovery"), "h1").outcome == "up"
    assert w.host("h1").quarantined_at is not None  # the third: a real recovery


def test_ends_outside_the_window_do_not_quarantine(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=2, flap_window_s=60.0, backoff_max_s=20.0))
    w.register("h1")
    w.out("h1")
    fail_init(w, "h1")
    for n in range(3):
        w.healthy("h1")
        w.queue("h1", f"a{n}")
        w.activation.run(f"a{n}", "h1")
        w.clock.advance(61)
    assert w.host("h1").quarantined_at is None
    assert w.host("h1").failures == 3


def test_a_manual_success_ends_the_quarantine_and_restarts_the_count(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    w.out("h1")
    fail_until_quarantined(w, "h1", 3)
    assert w.host("h1").quarantined_at is not None
    # An admin's failed attempt changes nothing.
    w.healthy("h1")
    failed = w.fleet.request_activation("h1", "alice")
    assert w.activation.run(failed, "h1").outcome == "failed"
    assert w.host("h1").quarantined_at is not None
    del w.agents.init_results["h1"]
    ok = w.fleet.request_activation("h1", "alice")
    assert w.activation.run(ok, "h1").outcome == "up"
    h1 = w.host("h1")
    assert (h1.quarantined_at, h1.failures, h1.next_attempt_at) == (None, 0, None)
    [entry] = w.audit(event="quarantine_cleared")
    assert (entry["actor"], entry["reason"], entry["details"]) == (
        "alice",
        "manual_activation",
        {"activation_id": ok},
    )
    # The three failures before are forgotten: one more does not quarantine it again.
    w.out("h1")
    fail_until_quarantined(w, "h1", 1)
    assert w.host("h1").quarantined_at is None
    assert len(w.audit(event="quarantined")) == 1


def test_an_admin_clears_the_quarantine(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=2))
    w.register("h1")
    w.out("h1")
    fail_until_quarantined(w, "h1", 2)
    h1 = w.host("h1")
    assert h1.quarantined_at is not None and h1.next_attempt_at is not None
    # Resetting the backoff alone keeps the quarantine.
    w.safety.clear_holds("h1", "alice", quarantine=False)
    assert w.host("h1").quarantined_at == h1.quarantined_at
    was = w.safety.clear_holds("h1", "bob", quarantine=True)
    assert was["quarantined_at"] == h1.quarantined_at.isoformat()
    assert was["quarantine_reason"].startswith("2 automatic recoveries or failures")
    [entry] = w.audit(event="quarantine_cleared")
    assert (entry["object_id"], entry["actor"], entry["reason"]) == ("h1", "bob", "admin")
    assert w.host("h1").quarantined_at is None
    del w.agents.init_results["h1"]
    w.later(1, "h1")
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["h1"]
    assert [o.outcome for o in w.run_sent()] == ["up"]
    assert w.host("h1").quarantined_at is None  # one recovery after the clear is not flapping


# === plan, state and incidents ===================================================================


def test_the_plan_shows_every_hold_and_gate(make: Make) -> None:
    w = make(capped(number=1), safety=replace(SAFETY, flap_limit=2))
    w.register("q1", "b1", "a1", "a2", cluster=C1)
    w.register("p1", cluster=C2)
    w.out("q1")
    fail_until_quarantined(w, "q1", 2)
    del w.agents.init_results["q1"]
    w.out("b1")
    fence = w.host("b1").fence
    with w.db.transaction() as conn:
        w.repos.safety.record_failure(conn, "b1", fence, w.clock() + timedelta(seconds=600))
    w.out("a1")
    w.clock.advance(1)
    w.out("a2", "p1")
    with w.db.transaction() as conn:  # the plan reads the stored reports
        w.repos.hosts.upsert_reports(
            conn, [good_report(h, w.clock()) for h in ("q1", "b1", "a1", "a2", "p1")], w.clock()
        )
    w.safety.pause("c2", "rack work", "bob", None)
    plan = w.plan()
    assert {h: (p["action"], p["code"]) for h, p in plan.items()} == {
        "q1": ("skip", "quarantined"),
        "b1": ("skip", "backoff"),
        "a1": ("activate", "activate"),
        "a2": ("skip", "capped"),
        "p1": ("skip", "paused"),
    }
    assert plan["a2"]["detail"] == "cluster c1 cap reached: 1/1 in flight"
    assert plan["p1"]["detail"] == "paused cluster c2 by bob: rack work"
    # With the observer gate recorded by the last tick, every candidate waits for it.
    with w.db.transaction() as conn:
        w.repos.safety.record_observer(conn, now=w.clock(), gate="redis_unavailable: x", silent=0, observed=5)
    plan = w.plan()
    assert (plan["a1"]["code"], plan["a2"]["code"]) == ("observer_unhealthy", "observer_unhealthy")
    assert plan["q1"]["code"] == "quarantined"  # a host's own hold comes first


def test_safety_state_shows_gate_pauses_in_flight_and_incidents(make: Make) -> None:
    w = make(replace(TICK, incident_min_hosts=3, incident_window_s=300.0))
    hosts = ["h1", "h2", "h3", "h4"]
    w.register(*hosts)
    with w.db.transaction() as conn:
        for h in hosts:
            w.repos.hosts.set_status(conn, h, "up", None, "ok", w.clock())
    w.clock.advance(10)
    for h in ["h1", "h2", "h3"]:  # lose the shared storage domain
        w.agents.reports[h] = good_report(h, w.clock(), storage_domains={"sd-1": False})
    w.healthy("h4")
    w.monitoring.tick()
    assert w.host("h1").status is S.NON_OPERATIONAL
    [opened] = w.audit(event="incident_opened")
    assert (
        opened["object_id"],
        opened["reason"],
        opened["details"]["subject"],
        opened["details"]["hosts"],
    ) == (
        "c1",
        "storage_domain_unreachable",
        "sd-1",
        3,
    )
    w.safety.pause(FLEET, "look first", "alice", None)
    state = w.safety.state()
    assert state["gate"] is None
    assert [p["scope"] for p in state["pauses"]] == [FLEET]
    assert [(i["cluster"], i["subject"], i["hosts"]) for i in state["incidents"]] == [("c1", "sd-1", 3)]
    assert state["in_flight"] == {}
    # The storage domain comes back: the hosts are recovered and the incident closes.
    w.safety.resume(FLEET, "alice")
    w.later(10, *hosts)
    w.monitoring.tick()
    assert w.safety.state()["in_flight"] == {"c1": 3}
    w.run_sent()
    w.later(10, *hosts)
    w.monitoring.tick()
    assert w.safety.state()["incidents"] == []
    assert [e["object_id"] for e in w.audit(event="incident_closed")] == ["c1"]


def test_tick_result_reports_the_gate_and_the_capped(make: Make) -> None:
    w = make(capped(number=1))
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    result = w.monitoring.tick()
    assert isinstance(result, TickResult)
    as_dict = result.as_dict()
    assert (as_dict["capped"], as_dict["enqueued"], as_dict["gate"]) == (1, 1, None)


def test_an_incident_closes_when_its_hosts_are_out_for_another_reason(make: Make) -> None:
    w = make(replace(TICK, incident_min_hosts=3))
    hosts = ["h1", "h2", "h3"]
    w.register(*hosts)
    with w.db.transaction() as conn:
        for h in hosts:
            w.repos.hosts.set_status(conn, h, "up", None, "ok", w.clock())
    for h in hosts:
        w.agents.reports[h] = good_report(h, w.clock(), storage_domains={"sd-1": False})
    w.monitoring.tick()
    assert len(w.safety.state()["incidents"]) == 1
    # The domain is back, but every init fails for another reason: no host is out for sd-1 now.
    for h in hosts:
        fail_init(w, h)
    w.later(10, *hosts)
    w.monitoring.tick()
    assert [o.outcome for o in w.run_sent()] == ["failed"] * 3
    assert {w.host(h).reason for h in hosts} == {"kvm_not_running"}
    w.later(1, *hosts)  # within the backoff: nothing moves but the incident
    w.monitoring.tick()
    assert w.safety.state()["incidents"] == []


def test_a_fleet_pause_also_holds_storage_domain_reactivation(make: Make) -> None:
    queued: list[str] = []
    w = make(TICK)
    w.monitoring.closer = dataclasses.replace(
        w.monitoring.closer, queue_domains=lambda: queued.append("called") or []
    )
    w.safety.pause("fleet", "maintenance window", "alice", None)
    w.monitoring.tick()
    assert queued == []
    w.safety.resume("fleet", "alice")
    w.monitoring.tick()
    assert queued == ["called"]
