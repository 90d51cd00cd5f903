"""The safety world over fakes, built by the composition root."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from autorecovery.adapters.agents import InitResult
from autorecovery.bootstrap import Tuning
from autorecovery.services.activation import Outcome, RecoverySafety
from autorecovery.services.monitoring import TickConfig
from autorecovery.settings import Settings
from models.domain import Cluster, HostStatus
from models.safety import CapPolicy
from tests.unit.services.world import World as ServiceWorld
from tests.unit.services.world import build_services_over_fakes

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
class World(ServiceWorld):
    """The service world, with Redis that a test can switch off and helpers for safety."""

    redis_up: list[bool] = field(default_factory=lambda: [True])

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

    def decision(self, host_id: str) -> tuple[str | None, str | None]:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded.state["last_decision"], loaded.state["last_decision_detail"]

    def in_flight(self) -> dict[str, int]:
        with self.db.transaction() as conn:
            return dict(self.repos.safety.in_flight_by_cluster(conn))

    def observer(self) -> dict[str, Any]:
        with self.db.transaction() as conn:
            return dict(self.repos.safety.observer_state(conn))

    def plan(self) -> dict[str, dict[str, Any]]:
        return {p["host_id"]: p for p in self.views.plan()}


Make = Callable[..., World]


SETTINGS = Settings(report_max_age_s=MAX_AGE_S, lock_ttl_s=40.0, tick_interval_s=10.0)


def build_world(tick: TickConfig = TICK, safety: RecoverySafety = SAFETY) -> World:
    """The services over fakes, built by the composition root, with a switch for Redis."""
    redis_up = [True]
    tuning = Tuning(recovery=safety, rng=random.Random(5), redis_ping=lambda: redis_up[0])
    return World(**build_services_over_fakes(tick, tuning), redis_up=redis_up)


def capped(share: float | None = None, number: int | None = None, fleet: int = 1000) -> TickConfig:
    return replace(TICK, caps=CapPolicy(cluster_max=number, cluster_share=share, fleet_max=fleet))


def within(seconds: float, low: float, high: float) -> bool:
    """``low <= seconds <= high``, give or take the microsecond a ``timedelta`` rounds to."""
    return low - 1e-6 <= seconds <= high + 1e-6


def fail_init(w: World, host_id: str) -> None:
    w.agents.init_results[host_id] = InitResult(ok=False, reason="kvm_not_running", detail="init failed")


def fail_until_quarantined(w: World, host_id: str, times: int) -> None:
    fail_init(w, host_id)
    for _ in range(times):
        w.healthy(host_id)
        activation_id = w.queue(host_id, str(uuid.uuid4()))
        assert w.activation.run(activation_id, host_id).outcome == "failed"
        next_at = w.host(host_id).next_attempt_at
        assert next_at is not None
        w.clock.now = next_at
