"""Backends for the contract tests: the in-memory fake, and real PostgreSQL (integration).

PostgreSQL comes from ``tests.support.servers.start_servers``: a fresh database on the server
named by AUTORECOVERY_DATABASE_URL (the embedded one when unset), migrated, dropped at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import redis

from autorecovery.adapters.agents import AgentClient
from autorecovery.adapters.store import PG_REPOS, Database, Repos
from autorecovery.bootstrap import Adapters, Tuning, build_services
from autorecovery.services.monitoring import BatchSpec, MonitoringService, TickConfig
from autorecovery.settings import Settings
from bench.roundtrips import RoundTrips
from tests.fakes import MemoryDatabase, memory_repos
from tests.fakes.ports import RecordingEnqueuer
from tests.support.servers import Servers, start_servers


@dataclass
class Backend:
    """One store under test: its database (``transaction()``) and its repositories."""

    name: str
    db: Any
    repos: Repos


@pytest.fixture(scope="session")
def pg_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """A fresh, migrated PostgreSQL database for the session, dropped at the end."""
    servers = start_servers(tmp_path_factory.mktemp("contract"))
    yield servers
    servers.close()


@pytest.fixture
def traced(pg_servers: Servers) -> Iterator[tuple[Database, RoundTrips]]:
    """An empty session database behind a one-connection pool whose round trips are counted."""
    trips = RoundTrips()
    db = Database(pg_servers.database_url, max_size=1, configure=trips.configure)
    db.open(wait_s=10.0)
    with db.transaction() as conn:
        conn.execute(
            "TRUNCATE audit_log, activations, reports, hosts, clusters, pauses, incidents,"
            " storage_domains, sd_activations, vm_runs, charges, ticks RESTART IDENTITY CASCADE"
        )
    yield db, trips
    db.close()


@pytest.fixture(scope="session")
def pg_database(pg_servers: Servers) -> Iterator[Database]:
    """A small pool on the session's database."""
    db = Database(pg_servers.database_url, max_size=2)
    db.open(wait_s=10.0)
    yield db
    db.close()


@pytest.fixture(params=["memory", pytest.param("postgres", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """An empty store: the fake, or PostgreSQL with its tables truncated."""
    if request.param == "memory":
        db = MemoryDatabase()
        return Backend("memory", db, memory_repos(db))
    pg: Database = request.getfixturevalue("pg_database")
    with pg.transaction() as conn:
        conn.execute(
            "TRUNCATE audit_log, activations, reports, hosts, clusters, pauses, incidents,"
            " storage_domains, sd_activations, vm_runs, charges, ticks RESTART IDENTITY CASCADE"
        )
        conn.execute(
            "UPDATE observer SET last_full_tick_at = NULL, gate = NULL, silent_hosts = 0,"
            " observed_hosts = 0, updated_at = NULL"
        )
    return Backend("postgres", pg, PG_REPOS)


#: Builds the monitoring service as the composition root does, over PostgreSQL, the session's
#: Redis and the given agents and clock: ``build_monitoring(db, agents, clock, tick_config)``.
MonitoringFactory = Callable[..., Any]


@pytest.fixture
def build_monitoring(pg_servers: Servers) -> Iterator[MonitoringFactory]:
    clients: list[redis.Redis] = []

    def build(
        db: Database,
        agents: AgentClient,
        clock: Callable[[], datetime],
        tick: TickConfig,
        send_batch: Callable[[BatchSpec], None] | None = None,
    ) -> MonitoringService:
        clients.append(redis.Redis.from_url(pg_servers.redis_url))
        adapters = Adapters(db=db, redis=clients[-1], agents=agents, repos=PG_REPOS, clock=clock)
        tuning = Tuning(tick=tick, redis_ping=lambda: True)
        enqueue = RecordingEnqueuer()
        return build_services(Settings(), adapters, enqueue, tuning=tuning, send_batch=send_batch).monitoring

    yield build
    for client in clients:
        client.close()
