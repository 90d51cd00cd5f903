"""The services' world over fakes, built by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import Repos
from autorecovery.bootstrap import Adapters, Container, Tuning, build_services
from autorecovery.ports import HostState
from autorecovery.ports.rows import ActivationRow
from autorecovery.services.activation import ActivationService, RecoverySafety
from autorecovery.services.fleet import FleetService, HostSpec
from autorecovery.services.housekeeping import HousekeepingService
from autorecovery.services.monitoring import MonitoringService, TickConfig
from autorecovery.services.safety import SafetyService
from autorecovery.services.views import FleetViews
from autorecovery.settings import Settings
from models.domain import Cluster, Host, HostStatus, Report
from models.safety import CapPolicy
from tests.fakes import FixedClock, MemoryDatabase, RecordingEnqueuer, fake_adapters
from tests.fakes.ports import good_report

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
MAX_AGE_S = 30.0
CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
S = HostStatus


@dataclass
class World:
    """The services as the composition root builds them, over fakes kept at hand."""

    container: Container
    adapters: Adapters
    agents: FakeAgentClient
    clock: FixedClock
    enqueue: RecordingEnqueuer

    @property
    def db(self) -> MemoryDatabase:
        return self.adapters.db  # type: ignore[return-value]

    @property
    def repos(self) -> Repos:
        return self.adapters.repos

    @property
    def redis(self) -> fakeredis.FakeRedis:
        return self.adapters.redis  # type: ignore[return-value]

    @property
    def monitoring(self) -> MonitoringService:
        return self.container.monitoring

    @property
    def housekeeping(self) -> HousekeepingService:
        return self.container.housekeeping

    @property
    def activation(self) -> ActivationService:
        return self.container.activation

    @property
    def fleet(self) -> FleetService:
        return self.container.fleet

    @property
    def views(self) -> FleetViews:
        return self.container.views

    @property
    def safety(self) -> SafetyService:
        return self.container.safety

    def close(self) -> None:
        self.container.close()

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
        return loaded.host

    def row(self, host_id: str) -> HostState:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded.state

    def stored_report(self, host_id: str) -> Report | None:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded.report

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

    def reap_as_if_later(self, seconds: float) -> None:
        """Reap every lease, as the reaper would ``seconds`` later (all leases long expired)."""
        with self.db.transaction() as conn:
            self.repos.activations.reap(
                conn,
                now=self.clock() + timedelta(seconds=seconds),
                queued_ttl_s=-seconds,
                running_ttl_s=-seconds,
            )


TICK = TickConfig(
    batch_size=2,
    report_max_age_s=MAX_AGE_S,
    tick_interval_s=10.0,
    queued_ttl_s=60.0,
    reap_running_after_s=70.0,
    # Caps, the quiet period and backoff have tests of their own (the safety test modules):
    # here a tick may activate every recoverable host at once.
    caps=CapPolicy(cluster_share=1.0, fleet_max=1000),
    quiet_period=False,
)


#: What the services read from settings here; everything else is in TICK.
SETTINGS = Settings(report_max_age_s=MAX_AGE_S, lock_ttl_s=40.0, tick_interval_s=10.0)


def build_services_over_fakes(tick: TickConfig, tuning: Tuning) -> dict[str, Any]:
    """What a World is made of: the composition root's container over fakes, and the fakes."""
    clock = FixedClock(T0)
    enqueue = RecordingEnqueuer()
    agents = FakeAgentClient()
    adapters = fake_adapters(clock, agents)
    domains = RecordingEnqueuer()  # storage domain activations, apart from the hosts'
    container = build_services(SETTINGS, adapters, enqueue, domains, replace(tuning, tick=tick))
    return {
        "container": container,
        "adapters": adapters,
        "agents": agents,
        "clock": clock,
        "enqueue": enqueue,
    }


def build_world(tick: TickConfig = TICK) -> World:
    """The services over fakes, every protection open (the safety tests turn them on)."""
    return World(**build_services_over_fakes(tick, Tuning(recovery=RecoverySafety())))


def queued_out_host(world: World, host_id: str = "h1", **status: Any) -> str:
    world.register(host_id)
    world.set_status(host_id, S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
    world.healthy(host_id)
    return world.queue(host_id, **status)
