"""Services over fakes: the memory store, the fake agent client, fakeredis, a fixed clock."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest

from autorecovery.adapters import keys
from autorecovery.adapters.agents import InitResult, Target
from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.locks import ObjectLock, holder_token
from autorecovery.adapters.store import Repos
from autorecovery.adapters.store.activations import ActivationRow
from autorecovery.services.activation import ActivationService, LockBusyRetry, Outcome
from autorecovery.services.fleet import FleetService, HostSpec
from autorecovery.services.monitoring import MonitoringService, TickConfig, TickResult
from models.domain import Cluster, Host, HostStatus, Report
from models.errors import BadReport, BrokerUnavailable, Conflict, InvalidInput, NotFound
from models.safety import CapPolicy
from tests.fakes import FixedClock, MemoryDatabase, RecordingEnqueuer, memory_repos
from tests.fakes.ports import good_report

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
MAX_AGE_S = 30.0
CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
S = HostStatus


@dataclass
class World:
    db: MemoryDatabase
    repos: Repos
    agents: FakeAgentClient
    redis: fakeredis.FakeRedis
    clock: FixedClock
    enqueue: RecordingEnqueuer
    monitoring: MonitoringService
    activation: ActivationService
    fleet: FleetService

    # -- setting the scene --

    def register(self, *host_ids: str, cluster: Cluster = CLUSTER) -> None:
        self.fleet.register_cluster(cluster, "admin")
        self.fleet.register_hosts([HostSpec(h, cluster.id, f"http://{h}") for h in host_ids], "admin")

    def healthy(self, *host_ids: str, age_s: float = 1.0) -> None:
        for h in host_ids:
            self.agents.reports[h] = good_report(h, self.clock() - timedelta(seconds=age_s))

    def set_status(
        self, host_id: str, status: HostStatus, reason: str | None = None, detail: str | None = None
    ) -> None:
        with self.db.transaction() as conn:
            assert self.repos.hosts.set_status(conn, host_id, status.value, reason, detail, self.clock())

    def queue(
        self, host_id: str, activation_id: str = "act-1", trigger: str = "auto", actor: str = "auto"
    ) -> str:
        with self.db.transaction() as conn:
            created = self.repos.activations.create_many(
                conn,
                [(activation_id, host_id)],
                trigger=trigger,
                actor=actor,
                now=self.clock(),
                statuses=[s.value for s in HostStatus],
                reason="test",
            )
        assert created == [(activation_id, host_id)]
        return activation_id

    # -- looking --

    def host(self, host_id: str) -> Host:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded[0]

    def row(self, host_id: str) -> dict[str, Any]:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded[2]

    def stored_report(self, host_id: str) -> Report | None:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded[1]

    def act(self, activation_id: str) -> ActivationRow:
        with self.db.transaction() as conn:
            row = self.repos.activations.get(conn, activation_id)
        assert row is not None
        return row

    def activations(self, host_id: str) -> list[ActivationRow]:
        with self.db.transaction() as conn:
            return list(self.repos.activations.recent(conn, host_id, limit=100))

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        with self.db.transaction() as conn:
            return list(reversed(self.repos.audit.query(conn, limit=10_000, **filters)))

    def events(self, host_id: str) -> list[str]:
        return [e["event"] for e in self.audit(object_id=host_id)]




TICK = TickConfig(
    batch_size=2,
    report_max_age_s=MAX_AGE_S,
    tick_interval_s=10.0,
    queued_ttl_s=60.0,
    reap_running_after_s=70.0,
    # Caps, the quiet period and backoff have tests of their own (test_safety_services.py):
    # here a tick may activate every recoverable host at once.
    caps=CapPolicy(cluster_share=1.0, fleet_max=1000),
    quiet_period=False,
)


@pytest.fixture
def world() -> Iterator[World]:
    memory = MemoryDatabase()
    repos = memory_repos(memory)
    db: Any = memory  # stands in for autorecovery.adapters.store.Database
    agents = FakeAgentClient()
    server = fakeredis.FakeServer()
    redis_client = fakeredis.FakeRedis(server=server)
    clock = FixedClock(T0)
    enqueue = RecordingEnqueuer()
    yield World(
        db=db,
        repos=repos,
        agents=agents,
        redis=redis_client,
        clock=clock,
        enqueue=enqueue,
        monitoring=MonitoringService(db, agents, enqueue, TICK, clock, repos=repos),
        activation=ActivationService(
            db,
            redis_client,
            agents,
            lock_ttl_s=40.0,
            report_max_age_s=MAX_AGE_S,
            clock=clock,
            repos=repos,
        ),
        fleet=FleetService(
            db,
            enqueue,
            report_max_age_s=MAX_AGE_S,
            clock=clock,
            repos=repos,
            caps=TICK.caps,
        ),
    )
    redis_client.close()


# === MonitoringService.tick ======================================================================


def test_tick_queues_registered_hosts_with_clean_reports(world: World) -> None:
    world.register("h1", "h2", "h3")
    world.healthy("h1", "h2")
    result = world.monitoring.tick()
    assert isinstance(result, TickResult)
    assert (result.hosts, result.batches, result.pulled, result.enqueued) == (3, 2, 3, 2)
    assert sorted(world.enqueue.hosts()) == ["h1", "h2"]
    assert {(t, a) for _, _, t, a in world.enqueue.calls} == {("auto", "auto")}
    for activation_id, host_id, _, _ in world.enqueue.calls:
        act = world.act(activation_id)
        assert (act.host_id, act.state, act.trigger, act.actor) == (host_id, "queued", "auto", "auto")
        assert world.host(host_id).in_flight
    assert world.row("h1")["last_decision"] == "activate"
    # h3 never answered: silent, skipped, explained.
    h3 = world.host("h3")
    assert (h3.status, h3.reason) == (S.NON_RESPONSIVE, "agent_unreachable")
    assert world.row("h3")["last_decision"] == "agent_unreachable"
    assert world.activations("h3") == []
    assert result.decisions == {"activate": 2, "agent_unreachable": 1}
    stored = world.stored_report("h1")
    assert stored is not None and stored.kvm and stored.source == "pull"


def test_tick_twice_queues_one_activation(world: World) -> None:
    world.register("h1")
    world.healthy("h1")
    first = world.monitoring.tick()
    world.clock.advance(10)
    world.healthy("h1")
    second = world.monitoring.tick()
    assert (first.enqueued, second.enqueued) == (1, 0)
    assert len(world.enqueue.calls) == 1
    assert len(world.activations("h1")) == 1
    assert len(world.audit(event="activation_queued")) == 1
    assert world.row("h1")["last_decision"] == "activation_in_flight"
    assert second.decisions == {"activation_in_flight": 1}


def test_an_up_host_with_a_problem_goes_out_and_is_not_activated(world: World) -> None:
    world.register("h1")
    world.set_status("h1", S.UP)
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    result = world.monitoring.tick()
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.detail) == (S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
    assert h1.status_changed_at == T0
    assert result.transitions == 1 and result.enqueued == 0
    assert world.enqueue.calls == []
    assert world.activations("h1") == []
    [change] = world.audit(event="status_changed", actor="auto")
    assert change["reason"] == "kvm_not_running"
    assert change["details"] == {"from": "up", "to": "non_operational", "detail": "kvm is not running"}
    assert (world.row("h1")["last_decision"], world.row("h1")["last_decision_detail"]) == (
        "has_problems",
        "kvm_not_running: kvm is not running",
    )


def test_an_unheard_up_host_goes_non_responsive(world: World) -> None:
    world.register("h1", "h2")
    world.set_status("h1", S.UP)
    world.set_status("h2", S.UP)
    world.agents.reports["h1"] = good_report("h1", T0)
    world.agents.unavailable.add("h1")
    world.agents.reports["h2"] = good_report("h2", T0 - timedelta(minutes=5))  # old data, answered
    world.monitoring.tick()
    assert (world.host("h1").status, world.host("h1").reason) == (S.NON_RESPONSIVE, "agent_unreachable")
    assert (world.host("h2").status, world.host("h2").reason) == (S.NON_RESPONSIVE, "stale_report")
    assert world.enqueue.calls == []


def test_a_host_still_faulty_is_left_out_until_its_fault_clears(world: World) -> None:
    world.register("h1")
    world.set_status("h1", S.NON_OPERATIONAL, "storage_domain_unreachable", "storage domain sd-1 unreachable")
    world.agents.reports["h1"] = good_report("h1", T0, storage_domains={"sd-1": False})
    world.monitoring.tick()
    assert world.enqueue.calls == []
    assert world.audit(event="status_changed") == []  # same reason, same detail: no change
    world.clock.advance(10)
    world.healthy("h1")
    world.monitoring.tick()
    assert world.enqueue.hosts() == ["h1"]


@pytest.mark.parametrize(
    ("status", "autorecovery", "code"),
    [
        (S.MAINTENANCE, True, "maintenance"),
        (S.NON_OPERATIONAL, False, "autorecovery_off"),
        (S.ERROR, True, "error_period"),
        (S.UP, True, "healthy"),
    ],
)
def test_tick_leaves_hosts_it_must_not_activate(
    world: World, status: HostStatus, autorecovery: bool, code: str
) -> None:
    world.register("h1")
    world.set_status("h1", status, "general", "set by the test")
    if not autorecovery:
        world.fleet.set_autorecovery("h1", False, "admin")
    world.healthy("h1")
    world.monitoring.tick()
    assert world.enqueue.calls == []
    assert world.activations("h1") == []
    assert world.host("h1").status is status
    assert world.row("h1")["last_decision"] == code


def test_a_freshly_pushed_report_is_not_pulled_again(world: World) -> None:
    world.register("h1", "h2")
    pushed = good_report("h1", T0 - timedelta(seconds=2))
    world.fleet.receive_report(
        "h1",
        {
            "host_id": "h1",
            "reported_at": pushed.reported_at.isoformat(),
            "kvm": True,
            "version": "4.5.2",
            "cpu_flags": ["vmx"],
            "networks": {"mgmt": True},
            "storage_domains": {"sd-1": True},
            "vms_running": 1,
            "mem_free_mb": 4096,
        },
        "agent",
    )
    world.healthy("h2")
    result = world.monitoring.tick()
    assert result.pulled == 1
    assert world.agents.pulls == 1
    assert sorted(world.enqueue.hosts()) == ["h1", "h2"]
    stored = world.stored_report("h1")
    assert stored is not None and stored.source == "push"


def test_a_failed_enqueue_closes_the_activation_and_the_next_tick_retries(world: World) -> None:
    world.register("h1")
    world.healthy("h1")
    world.enqueue.failing = True
    result = world.monitoring.tick()
    assert result.enqueued == 1
    [act] = world.activations("h1")
    assert (act.state, act.outcome, act.detail) == ("failed", "not_enqueued", "broker down")
    assert world.audit(event="activation_not_enqueued")[0]["reason"] == "broker_unavailable"
    world.enqueue.failing = False
    world.clock.advance(10)
    world.healthy("h1")
    world.monitoring.tick()
    assert world.enqueue.hosts() == ["h1"]


def test_the_reaper_abandons_a_stuck_activation_and_fences_its_holder(world: World) -> None:
    world.register("h1")
    world.healthy("h1")
    act_id = world.queue("h1")
    with world.db.transaction() as conn:
        fence = world.repos.activations.begin(conn, act_id, world.clock())
        assert world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    world.clock.advance(60)  # not yet past the running limit (70 s)
    assert world.monitoring.tick().reaped == 0
    assert world.act(act_id).state == "running"
    world.clock.advance(20)
    world.healthy("h1")
    result = world.monitoring.tick()
    assert result.reaped == 1
    act = world.act(act_id)
    assert (act.state, act.outcome) == ("abandoned", "abandoned")
    h1 = world.host("h1")
    assert h1.fence == (fence or 0) + 1
    assert (h1.reason, h1.detail) == ("activation_failed", "activation abandoned: no result in time")
    [entry] = world.audit(event="activation_abandoned")
    assert entry["details"] == {"activation_id": act_id, "was": "running"}
    # The old holder's token writes nothing now.
    with world.db.transaction() as conn:
        assert not world.repos.hosts.set_status(conn, "h1", "up", None, "late", world.clock(), fence=fence)
    # And the host, recoverable, is not left behind: the same tick queued a new activation.
    assert world.enqueue.hosts() == ["h1"]
    assert world.host("h1").in_flight


def test_the_reaper_expires_a_queued_activation_that_never_ran(world: World) -> None:
    world.register("h1")
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    act_id = world.queue("h1")
    world.clock.advance(61)
    world.agents.reports["h1"] = good_report("h1", world.clock(), kvm=False)
    assert world.monitoring.tick().reaped == 1
    assert world.act(act_id).detail == "no result in time (was queued)"
    assert world.host("h1").status is S.NON_OPERATIONAL


def test_statements_per_batch_do_not_grow_with_the_batch(world: World) -> None:
    def run(n: int) -> int:
        w_db: Any = MemoryDatabase()
        repos = memory_repos(w_db)
        agents = FakeAgentClient()
        cfg = replace(TICK, batch_size=500)
        service = MonitoringService(
            w_db,
            agents,
            RecordingEnqueuer(),
            cfg,
            FixedClock(T0),
            repos=repos,
        )
        fleet = FleetService(
            w_db,
            RecordingEnqueuer(),
            report_max_age_s=MAX_AGE_S,
            clock=FixedClock(T0),
            repos=repos,
        )
        fleet.register_cluster(CLUSTER, "admin")
        fleet.register_hosts([HostSpec(f"h{i:04d}", "c1", "u") for i in range(n)], "admin")
        for i in range(n):
            agents.reports[f"h{i:04d}"] = good_report(f"h{i:04d}", T0)
        return service.tick().statements

    assert run(3) == run(300)


# === ActivationService.run =======================================================================


def queued_out_host(world: World, host_id: str = "h1", **status: Any) -> str:
    world.register(host_id)
    world.set_status(host_id, S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
    world.healthy(host_id)
    return world.queue(host_id, **status)


def test_activation_happy_path_brings_the_host_up(world: World) -> None:
    act_id = queued_out_host(world)
    out = world.activation.run(act_id, "h1")
    assert out == Outcome(act_id, "h1", "up", "agent init ok; report clean", 1)
    assert out.as_dict()["outcome"] == "up"
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence, h1.in_flight) == (S.UP, None, 1, False)
    act = world.act(act_id)
    assert (act.state, act.outcome, act.fence) == ("succeeded", "up", 1)
    assert act.started_at == T0 and act.ended_at == T0
    assert world.agents.init_calls == [("h1", 1, act_id)]
    assert world.events("h1")[-5:] == [
        "activation_queued",
        "activation_started",
        "status_changed",
        "status_changed",
        "activation_succeeded",
    ]
    to_init, to_up = world.audit(event="status_changed", object_id="h1")[-2:]
    assert (to_init["details"]["to"], to_up["details"]["to"]) == ("initializing", "up")
    assert {e["actor"] for e in world.audit(object_id="h1")[-4:]} == {"auto"}
    assert holder_token(world.redis, keys.host_lock("h1")) is None


def test_manual_activation_runs_with_autorecovery_off_and_carries_the_actor(world: World) -> None:
    world.register("h1")
    world.fleet.set_autorecovery("h1", False, "alice")
    world.set_status("h1", S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
    world.healthy("h1")
    act_id = world.fleet.request_activation("h1", "alice")
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "up"
    started = world.audit(event="activation_started")[0]
    assert (started["actor"], started["reason"]) == ("alice", "manual")
    assert world.audit(event="activation_succeeded")[0]["actor"] == "alice"


def test_a_busy_lock_on_a_queued_activation_is_a_skip(world: World) -> None:
    act_id = queued_out_host(world)
    holder = ObjectLock(world.redis, keys.host_lock("h1"), 40.0)
    assert holder.acquire()
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "lock_busy"
    act = world.act(act_id)
    assert (act.state, act.outcome, act.reason) == ("skipped", "lock_busy", "lock_busy")
    [entry] = world.audit(event="activation_skipped")
    assert (entry["reason"], entry["actor"], entry["details"]) == (
        "lock_busy",
        "auto",
        {"activation_id": act_id},
    )
    assert world.agents.init_calls == []
    assert world.host("h1").status is S.NON_OPERATIONAL
    assert holder_token(world.redis, keys.host_lock("h1")) == holder.token
    holder.release()


def test_a_busy_lock_on_a_running_activation_is_retried(world: World) -> None:
    act_id = queued_out_host(world)
    with world.db.transaction() as conn:
        world.repos.activations.begin(conn, act_id, world.clock())
    holder = ObjectLock(world.redis, keys.host_lock("h1"), 40.0)
    assert holder.acquire()
    with pytest.raises(LockBusyRetry):
        world.activation.run(act_id, "h1")
    assert world.act(act_id).state == "running"
    holder.release()


def test_a_fresh_report_with_a_problem_skips_without_init(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.reports["h1"] = good_report("h1", T0, networks={"mgmt": False})
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "has_problems"
    act = world.act(act_id)
    assert (act.state, act.outcome) == ("skipped", "has_problems")
    assert act.detail == "network_interface_down: network mgmt link down"
    assert world.agents.init_calls == []
    assert world.host("h1").status is S.NON_OPERATIONAL
    assert "activation_skipped" in world.events("h1")
    assert holder_token(world.redis, keys.host_lock("h1")) is None


def test_an_unreachable_agent_at_recheck_skips_without_init(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.unavailable.add("h1")
    assert world.activation.run(act_id, "h1").outcome == "agent_unreachable"
    assert world.agents.init_calls == []


def test_an_agent_init_failure_leaves_the_host_out_with_the_agents_reason(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.init_results["h1"] = InitResult(
        ok=False, reason="storage_domain_unreachable", detail="sd-1 connect timed out"
    )
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.detail) == ("failed", "sd-1 connect timed out")
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.detail) == (
        S.NON_OPERATIONAL,
        "storage_domain_unreachable",
        "sd-1 connect timed out",
    )
    act = world.act(act_id)
    assert (act.state, act.reason) == ("failed", "storage_domain_unreachable")
    assert world.audit(event="activation_failed")[0]["reason"] == "failed"


def test_an_unavailable_agent_at_init_fails_the_activation(world: World) -> None:
    act_id = queued_out_host(world)

    def init(target: Target, fence: int, activation_id: str) -> InitResult:
        world.agents.unavailable.add(target.host_id)
        return FakeAgentClient.init(world.agents, target, fence, activation_id)

    world.agents.init = init  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "failed"
    assert (world.host("h1").status, world.host("h1").reason) == (S.NON_OPERATIONAL, "activation_failed")


def test_a_host_unhealthy_after_init_is_not_reported_up(world: World) -> None:
    act_id = queued_out_host(world)

    def init(target: Target, fence: int, activation_id: str) -> InitResult:
        world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
        return InitResult(ok=True)

    world.agents.init = init  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "unhealthy_after_init"
    assert (world.host("h1").status, world.host("h1").reason) == (S.NON_OPERATIONAL, "kvm_not_running")
    assert world.audit(event="activation_succeeded") == []


def test_an_agent_ahead_of_the_database_fails_the_activation_and_advances_the_fence(
    world: World,
) -> None:
    # PostgreSQL still holds our fence, so nobody newer owns the host: the agent's counter is
    # ahead (a restored database). The failure is recorded and the counter moves past the agent's.
    act_id = queued_out_host(world)
    world.agents.highest_fence["h1"] = 43
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "stale_fence"
    assert world.agents.init_calls == []
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence) == (S.NON_OPERATIONAL, "activation_failed", 43)
    assert world.act(act_id).state == "failed"
    assert holder_token(world.redis, keys.host_lock("h1")) is None
    # The failure backs the host off (one tick at most); then the next activation gets a fence
    # the agent accepts.
    assert world.host("h1").failures == 1
    world.clock.advance(TICK.tick_interval_s)
    world.healthy("h1")
    act2 = world.queue("h1", "act-2")
    assert world.activation.run(act2, "h1").outcome == "up"
    assert world.agents.init_calls[-1][1] == 44


def test_a_stale_holder_refused_by_the_agent_writes_nothing(world: World) -> None:
    act_id = queued_out_host(world)
    original = world.agents.init

    def reaped_then_refused(target: Target, fence: int, activation_id: str) -> InitResult:
        # The holder paused so long that the reaper abandoned it and a newer holder got in.
        later = world.clock() + timedelta(seconds=100)
        with world.db.transaction() as conn:
            world.repos.activations.reap(conn, now=later, queued_before=later, running_before=later)
        world.agents.highest_fence[target.host_id] = fence + 1
        return original(target, fence, activation_id)

    world.agents.init = reaped_then_refused  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    before = world.events("h1")
    assert out.outcome == "stale_fence"
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence) == (S.NON_OPERATIONAL, "activation_failed", 2)
    assert world.act(act_id).state == "abandoned"
    assert world.events("h1") == before


def test_a_fence_superseded_during_init_writes_nothing(world: World) -> None:
    act_id = queued_out_host(world)
    original = world.agents.init

    def init_then_reaped(target: Target, fence: int, activation_id: str) -> InitResult:
        result = original(target, fence, activation_id)
        # Meanwhile the holder paused so long that the reaper abandoned its activation.
        later = world.clock() + timedelta(seconds=100)
        with world.db.transaction() as conn:
            world.repos.activations.reap(conn, now=later, queued_before=later, running_before=later)
        return result

    world.agents.init = init_then_reaped  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.fence) == ("stale_fence", 1)
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence) == (S.NON_OPERATIONAL, "activation_failed", 2)
    assert world.act(act_id).state == "abandoned"
    assert world.audit(event="activation_succeeded") == []
    assert world.events("h1")[-1] == "activation_abandoned"


def test_a_fence_superseded_before_init_writes_nothing_and_calls_no_agent(world: World) -> None:
    act_id = queued_out_host(world)
    original = world.agents.get_report

    def report_then_reaped(target: Target, now: datetime) -> Report:
        later = world.clock() + timedelta(seconds=100)
        with world.db.transaction() as conn:
            world.repos.activations.reap(conn, now=later, queued_before=later, running_before=later)
        return original(target, now)

    world.agents.get_report = report_then_reaped  # type: ignore[method-assign]
    assert world.activation.run(act_id, "h1").outcome == "stale_fence"
    assert world.agents.init_calls == []
    assert world.host("h1").status is S.NON_OPERATIONAL
    assert holder_token(world.redis, keys.host_lock("h1")) is None


def test_a_host_already_up_is_a_no_op(world: World) -> None:
    act_id = queued_out_host(world)
    world.set_status("h1", S.UP)
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "already_up"
    assert world.agents.init_calls == []
    assert world.host("h1").status is S.UP
    assert world.act(act_id).state == "skipped"


def test_running_a_closed_or_unknown_activation_is_a_duplicate(world: World) -> None:
    act_id = queued_out_host(world)
    assert world.activation.run(act_id, "h1").outcome == "up"
    before = copy.deepcopy(world.db.state)
    again = world.activation.run(act_id, "h1")
    assert again.outcome == "duplicate"
    assert world.activation.run("no-such-activation", "h1").outcome == "duplicate"
    assert world.db.state == before
    assert len(world.agents.init_calls) == 1


def test_a_retried_activation_gets_a_new_fence_and_finishes(world: World) -> None:
    act_id = queued_out_host(world)
    with world.db.transaction() as conn:  # a first attempt began, then its worker died
        world.repos.activations.begin(conn, act_id, world.clock())
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.fence) == ("up", 2)


def test_give_up_returns_an_initializing_host_to_non_operational(world: World) -> None:
    act_id = queued_out_host(world)
    with world.db.transaction() as conn:
        fence = world.repos.activations.begin(conn, act_id, world.clock())
        world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    world.activation.give_up(act_id, "h1", "retries exhausted: redis down")
    act = world.act(act_id)
    assert (act.state, act.outcome) == ("failed", "gave_up")
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.detail) == (
        S.NON_OPERATIONAL,
        "activation_failed",
        "retries exhausted: redis down",
    )
    assert world.audit(event="activation_failed")[0]["reason"] == "gave_up"
    before = copy.deepcopy(world.db.state)
    world.activation.give_up(act_id, "h1", "again")
    assert world.db.state == before


# === FleetService ================================================================================


def test_register_cluster_is_audited(world: World) -> None:
    assert world.fleet.register_cluster(CLUSTER, "alice") is True
    assert world.fleet.register_cluster(replace(CLUSTER, min_version="4.6"), "bob") is False
    created, updated = world.audit(object_type="cluster")
    assert (created["event"], created["actor"]) == ("cluster_registered", "alice")
    assert (updated["event"], updated["actor"], updated["details"]["min_version"]) == (
        "cluster_updated",
        "bob",
        "4.6",
    )


def test_register_hosts_is_all_or_nothing(world: World) -> None:
    world.fleet.register_cluster(CLUSTER, "admin")
    before = world.audit()
    with pytest.raises(InvalidInput) as info:
        world.fleet.register_hosts([HostSpec("h1", "c1", "u1"), HostSpec("h2", "nope", "u2")], "alice")
    assert info.value.field == "cluster" and "h2" in str(info.value)
    assert world.fleet.register_hosts([HostSpec("h0", "c1", "u0")], "alice") == ["h0"]
    with pytest.raises(Conflict):
        world.fleet.register_hosts([HostSpec("h1", "c1", "u1"), HostSpec("h0", "c1", "again")], "alice")
    with world.db.transaction() as conn:
        assert [r[0].id for r in world.repos.hosts.list_hosts(conn)] == ["h0"]
    registered = [e for e in world.audit() if e not in before]
    assert [(e["event"], e["object_id"], e["actor"]) for e in registered] == [
        ("host_registered", "h0", "alice")
    ]
    assert world.host("h0").agent_url == "u0"
    assert world.db.rollbacks == 2


def test_request_activation_queues_a_manual_activation(world: World) -> None:
    world.register("h1")
    act_id = world.fleet.request_activation("h1", "alice")
    assert world.enqueue.calls == [(act_id, "h1", "manual", "alice")]
    act = world.act(act_id)
    assert (act.state, act.trigger, act.actor) == ("queued", "manual", "alice")
    [entry] = world.audit(event="activation_queued")
    assert (entry["actor"], entry["reason"], entry["details"]["trigger"]) == (
        "alice",
        "requested by an admin",
        "manual",
    )


def test_request_activation_is_refused_when_up_held_or_unknown(world: World) -> None:
    world.register("h1", "h2")
    world.set_status("h1", S.UP)
    with pytest.raises(Conflict) as up:
        world.fleet.request_activation("h1", "alice")
    assert up.value.details == {"status": "up"}
    held = world.queue("h2", "auto-1")
    with pytest.raises(Conflict) as busy:
        world.fleet.request_activation("h2", "alice")
    assert busy.value.details["holder"]["id"] == held
    with pytest.raises(NotFound):
        world.fleet.request_activation("ghost", "alice")
    assert world.enqueue.calls == []
    assert [a.id for a in world.activations("h2")] == [held]
    assert world.activations("h1") == []


def test_activate_audits_a_refusal(world: World) -> None:
    world.register("h1", "h2")
    world.set_status("h1", S.UP)
    held = world.queue("h2", "auto-1")
    with pytest.raises(Conflict):
        world.fleet.activate("h1", "alice")
    with pytest.raises(Conflict):
        world.fleet.activate("h2", "bob")
    refused = world.audit(event="activation_refused")
    assert [(e["object_id"], e["actor"], e["reason"]) for e in refused] == [
        ("h1", "alice", "already_up"),
        ("h2", "bob", "activation_in_flight"),
    ]
    assert refused[1]["details"]["holder_id"] == held


def test_request_activation_with_the_broker_down_closes_the_record(world: World) -> None:
    world.register("h1")
    world.enqueue.failing = True
    with pytest.raises(BrokerUnavailable):
        world.fleet.request_activation("h1", "alice")
    [act] = world.activations("h1")
    assert (act.state, act.outcome) == ("failed", "not_enqueued")
    world.enqueue.failing = False
    assert world.fleet.request_activation("h1", "alice")  # the host is not held by the dead record


def test_set_autorecovery_is_audited_with_the_actor(world: World) -> None:
    world.register("h1")
    world.fleet.set_autorecovery("h1", False, "alice")
    world.fleet.set_autorecovery("h1", True, "bob")
    off, on = world.audit(object_id="h1", event="autorecovery_disabled") + world.audit(
        object_id="h1", event="autorecovery_enabled"
    )
    assert (off["actor"], off["details"]) == ("alice", {"previous": True, "enabled": False})
    assert (on["actor"], on["details"]) == ("bob", {"previous": False, "enabled": True})
    assert world.host("h1").autorecovery is True
    before = copy.deepcopy(world.db.state)
    with pytest.raises(NotFound):
        world.fleet.set_autorecovery("ghost", False, "alice")
    assert world.db.state == before


def test_set_maintenance(world: World) -> None:
    world.register("h1", "h2")
    world.fleet.set_maintenance("h1", "alice", "disk swap")
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.detail) == (S.MAINTENANCE, "maintenance", "disk swap")
    assert world.audit(event="status_changed", object_id="h1")[0]["actor"] == "alice"
    world.queue("h2")
    with pytest.raises(Conflict):
        world.fleet.set_maintenance("h2", "alice", None)
    assert world.host("h2").status is S.UNASSIGNED


REPORT_BODY: dict[str, Any] = {
    "host_id": "h1",
    "reported_at": "2026-11-24T11:59:58Z",
    "kvm": True,
    "version": "4.5.2",
    "cpu_flags": ["vmx"],
    "networks": {"mgmt": True},
    "storage_domains": {"sd-1": True},
    "vms_running": 1,
    "mem_free_mb": 4096,
}


def test_receive_report_stores_a_valid_report(world: World) -> None:
    world.register("h1")
    report, stored = world.fleet.receive_report("h1", dict(REPORT_BODY), "agent")
    assert report.source == "push" and stored
    assert world.stored_report("h1") == report


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**REPORT_BODY, "kvm": 1}, "kvm"),
        ({**REPORT_BODY, "host_id": "h2"}, "host_id"),
        ({k: v for k, v in REPORT_BODY.items() if k != "version"}, "version"),
        ("nope", "report"),
    ],
)
def test_receive_report_with_a_bad_report_stores_no_report(world: World, body: Any, field: str) -> None:
    world.register("h1")
    with pytest.raises(BadReport) as info:
        world.fleet.receive_report("h1", body, "agent")
    assert info.value.field == field
    assert world.stored_report("h1") is None


def test_receive_report_for_an_unknown_host(world: World) -> None:
    with pytest.raises(NotFound):
        world.fleet.receive_report("ghost", dict(REPORT_BODY), "agent")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kvm": "yes"}, "kvm"),
        ({"mem_free_mb": 2**31}, "mem_free_mb"),
        ({"networks": {"mg\x00mt": True}}, "networks.mg"),
    ],
    ids=["mistyped", "count above integer", "nul in a name"],
)
def test_receive_report_rejects_stores_nothing_and_audits(
    world: World, changes: dict[str, Any], field: str
) -> None:
    world.register("h1")
    with pytest.raises(BadReport) as info:
        world.fleet.receive_report("h1", {**REPORT_BODY, **changes}, "agent-h1")
    named = info.value.field
    assert named.startswith(field) and "\x00" not in named  # printable: it is stored and logged
    assert world.stored_report("h1") is None
    [entry] = world.audit(event="report_rejected")
    assert (entry["actor"], entry["reason"], entry["details"]["field"]) == ("agent-h1", named, named)


def test_receive_report_does_not_replace_a_newer_one(world: World) -> None:
    world.register("h1")
    newer, stored = world.fleet.receive_report("h1", dict(REPORT_BODY), "agent")
    assert stored is True
    older, stored = world.fleet.receive_report(
        "h1", {**REPORT_BODY, "reported_at": "2026-11-24T11:00:00Z", "kvm": False}, "agent"
    )
    assert stored is False
    assert world.stored_report("h1") == newer


def test_plan_says_what_the_tick_would_do_and_changes_nothing(world: World) -> None:
    world.register("h1", "h2", "h3", "h4")
    world.set_status("h1", S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
    world.set_status("h2", S.UP)
    world.set_status("h4", S.MAINTENANCE)
    with world.db.transaction() as conn:
        world.repos.hosts.upsert_reports(
            conn, [good_report("h1", T0), good_report("h2", T0, kvm=False), good_report("h4", T0)], T0
        )
    before = copy.deepcopy(world.db.state)
    plan = {p["host_id"]: p for p in world.fleet.plan()}
    assert world.db.state == before
    assert world.enqueue.calls == []
    assert (plan["h1"]["action"], plan["h1"]["code"], plan["h1"]["problems"]) == ("activate", "activate", [])
    assert (plan["h2"]["action"], plan["h2"]["next_status"], plan["h2"]["code"]) == (
        "skip",
        "non_operational",
        "has_problems",
    )
    assert plan["h2"]["problems"] == [{"reason": "kvm_not_running", "detail": "kvm is not running"}]
    assert (plan["h3"]["action"], plan["h3"]["code"]) == ("skip", "no_report")
    assert (plan["h4"]["action"], plan["h4"]["code"]) == ("skip", "maintenance")
    assert [p["host_id"] for p in world.fleet.plan(cluster_id="c1", limit=2)] == ["h1", "h2"]


def test_describe_explains_why_a_host_is_not_back(world: World) -> None:
    world.register("h1")
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    world.monitoring.tick()
    d = world.fleet.describe("h1")
    assert d["status"] == "non_operational"
    assert d["why_not_recovered"] == {"code": "has_problems", "detail": "kvm_not_running: kvm is not running"}
    assert d["last_decision"]["code"] == "has_problems"
    assert d["activation"] is None
    with pytest.raises(NotFound):
        world.fleet.describe("ghost")


def test_delete_host_keeps_the_audit_trail(world: World) -> None:
    world.register("h1", "h2")
    world.queue("h2")
    world.fleet.delete_host("h1", "alice")
    with pytest.raises(Conflict):
        world.fleet.delete_host("h2", "alice")
    with pytest.raises(NotFound):
        world.fleet.delete_host("h1", "alice")
    assert world.events("h1") == ["host_registered", "host_deleted"]
    assert world.fleet.counts()["hosts_by_status"] == {"unassigned": 1}


# === the memory store itself =====================================================================


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
        world.fleet.describe("h1")


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
