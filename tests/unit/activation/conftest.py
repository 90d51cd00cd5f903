"""A small world for activation tests: memory store, fake agents, fakeredis, a fixed clock."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import fakeredis
import pytest

from autorecovery.adapters import keys
from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.locks import ObjectLock
from autorecovery.adapters.store import Repos
from autorecovery.bootstrap import Tuning, build_services
from autorecovery.ports.rows import ActivationRow
from autorecovery.services.activation import ActivationService, InitWait, Outcome
from autorecovery.services.fleet import FleetService, HostSpec
from autorecovery.services.storage import StorageService
from models.domain import Cluster, Host, HostStatus, StorageDomain
from tests.fakes import FixedClock, RecordingEnqueuer, fake_adapters
from tests.fakes.adapters import UNIT_SETTINGS
from tests.fakes.ports import good_report

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
MAX_AGE_S = 30.0
LOCK_TTL_S = 40.0
INIT_MAX_S = 20.0
CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))


@dataclass
class World:
    """Everything an activation touches, with helpers to set the scene and look."""

    db: Any
    repos: Repos
    agents: FakeAgentClient
    redis: fakeredis.FakeRedis
    clock: FixedClock
    fleet: FleetService
    activation: ActivationService
    storage: StorageService

    def out_host(self, host_id: str = "h1", activation_id: str = "act-1", trigger: str = "auto") -> str:
        """Register (once) a host that is out but healthy again, and queue its activation."""
        with self.db.transaction() as conn:
            known = self.repos.hosts.get_host(conn, host_id) is not None
        if not known:
            self.fleet.register_cluster(CLUSTER, "admin")
            self.fleet.register_hosts([HostSpec(host_id, CLUSTER.id, f"http://{host_id}")], "admin")
        with self.db.transaction() as conn:
            self.repos.hosts.set_status(conn, host_id, "non_operational", "kvm_not_running", "kvm off", T0)
            self.repos.activations.create_many(
                conn,
                [(activation_id, host_id)],
                trigger=trigger,
                actor="auto",
                now=T0,
                statuses=[s.value for s in HostStatus],
                reason="test",
            )
        self.agents.reports[host_id] = good_report(host_id, T0 - timedelta(seconds=1))
        return activation_id

    def activate(self, activation_id: str = "act-1", host_id: str = "h1", max_steps: int = 1000) -> Outcome:
        """Run the first step, then each later step when due, until the activation is closed."""
        out = self.activation.run(activation_id, host_id, "send-task")
        steps = 0
        while out.check_in_s is not None and steps < max_steps:
            self.clock.advance(out.check_in_s)
            # As the worker does: the next check's message has the task id the step named.
            out = self.activation.check(activation_id, host_id, out.next_check_id or f"check-task-{steps}")
            steps += 1
        return out

    def begin(self, activation_id: str) -> int:
        """Begin an activation as another delivery would (it gets the fence)."""
        with self.db.transaction() as conn:
            fence = self.repos.activations.begin(conn, activation_id, self.clock())
        assert fence is not None
        return int(fence)

    def hold(self, key: str, owner: str = "", ttl_s: float = LOCK_TTL_S) -> ObjectLock:
        """Take a lock as another process would."""
        lock = ObjectLock(self.redis, key, ttl_s)
        assert lock.acquire(owner=owner)
        return lock

    def host_lock(self, host_id: str = "h1") -> str:
        return keys.host_lock(host_id)

    def host(self, host_id: str = "h1") -> Host:
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        assert loaded is not None
        return loaded[0]

    def act(self, activation_id: str = "act-1") -> ActivationRow:
        with self.db.transaction() as conn:
            row = self.repos.activations.get(conn, activation_id)
        assert row is not None
        return row

    def domain(self, sd_id: str = "sd-1") -> StorageDomain:
        with self.db.transaction() as conn:
            sd = self.repos.storage.get(conn, sd_id)
        assert sd is not None
        return sd

    def sd_act(self, activation_id: str) -> dict[str, Any]:
        with self.db.transaction() as conn:
            row = self.repos.storage.get_activation(conn, activation_id)
        assert row is not None
        return dict(row)

    def events(self, object_id: str = "h1") -> list[str]:
        with self.db.transaction() as conn:
            entries = self.repos.audit.query(conn, limit=10_000, object_id=object_id)
        return [e["event"] for e in reversed(entries)]


def make_world(lock_ttl_s: float = LOCK_TTL_S, init_max_s: float = INIT_MAX_S) -> World:
    """A fresh world; ``lock_ttl_s`` short for tests where a lock must expire in real time.

    ``World.activate`` runs an activation's steps as the tasks would, moving the fixed clock by
    each step's countdown.
    """
    clock = FixedClock(T0)
    agents = FakeAgentClient()
    adapters = fake_adapters(clock, agents)
    enqueue = RecordingEnqueuer()
    # Copied, not validated: a lock shorter than the activation's time limits is the point here.
    settings = UNIT_SETTINGS.model_copy(update={"lock_ttl_s": lock_ttl_s, "report_max_age_s": MAX_AGE_S})
    wait = InitWait(init_max_s=init_max_s, poll_s=1.0)
    services = build_services(settings, adapters, enqueue, enqueue, Tuning(wait=wait))
    return World(
        db=adapters.db,
        repos=adapters.repos,
        agents=agents,
        redis=adapters.redis,
        clock=clock,
        fleet=services.fleet,
        activation=services.activation,
        storage=services.storage,
    )


@pytest.fixture
def world() -> Iterator[World]:
    made = make_world()
    yield made
    made.redis.close()
