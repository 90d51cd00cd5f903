"""Concurrent operator writes on real PostgreSQL: the audit log records the true previous value."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import Database
from autorecovery.bootstrap import Adapters, Container, build_services
from autorecovery.services.fleet import HostSpec
from autorecovery.settings import Settings
from models.domain import Cluster
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

WRITERS = 20
WRITES_EACH = 25


@pytest.fixture
def services(pg_servers: Servers) -> Iterator[Container]:
    """The services over a pool with a connection per writer, on a truncated database."""
    db = Database(pg_servers.database_url, max_size=WRITERS + 1)
    db.open(wait_s=10.0)
    with db.transaction() as conn:
        conn.execute("TRUNCATE audit_log, activations, reports, hosts, clusters RESTART IDENTITY CASCADE")
    client = redis.Redis.from_url(pg_servers.redis_url)
    built = build_services(Settings(), Adapters(db=db, redis=client, agents=FakeAgentClient()))
    built.fleet.register_cluster(Cluster("c1"), "admin")
    built.fleet.register_hosts([HostSpec("h1", "c1", "http://h1:1")], "admin")
    yield built
    client.close()
    db.close()


def _race(write: Callable[[random.Random], None]) -> None:
    """Run ``write`` WRITES_EACH times in each of WRITERS threads, all starting together."""
    start = threading.Barrier(WRITERS)
    errors: list[BaseException] = []

    def writer(seed: int) -> None:
        rng = random.Random(seed)  # noqa: S311 - test data
        start.wait()
        try:
            for _ in range(WRITES_EACH):
                write(rng)
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _wrong_previous(entries: list[dict[str, Any]], before: object, key: str, value: str) -> int:
    """Count entries (oldest first) whose previous value is not what the entry before set."""
    wrong = 0
    for entry in entries:
        details = entry["details"]
        wrong += details[key] != before
        before = details[value]
    return wrong


def test_concurrent_flag_writes_audit_the_true_previous_value(services: Container) -> None:
    _race(lambda rng: services.fleet.set_autorecovery("h1", rng.random() < 0.5, "writer"))
    entries = list(reversed(services.views.audit_log(object_id="h1", actor="writer", limit=10_000)))
    assert len(entries) == WRITERS * WRITES_EACH
    assert _wrong_previous(entries, True, "previous", "enabled") == 0
    assert services.views.describe("h1")["autorecovery"] == entries[-1]["details"]["enabled"]


def test_concurrent_agent_url_writes_audit_the_true_previous_url(services: Container) -> None:
    urls = [f"http://h1:{port}" for port in range(2, 6)]
    _race(lambda rng: services.fleet.set_agent_url("h1", rng.choice(urls), "writer"))
    entries = list(reversed(services.views.audit_log(object_id="h1", actor="writer", limit=10_000)))
    assert entries, "no URL changed"
    assert _wrong_previous(entries, "http://h1:1", "from", "to") == 0


def test_concurrent_backoff_resets_audit_every_failure_they_clear(services: Container) -> None:
    """Failures counted while admins reset the backoff: each one is reset (and audited) once."""
    db = services.db

    def count_or_reset(rng: random.Random) -> None:
        if rng.random() < 0.5:
            services.safety.clear_holds("h1", "writer", quarantine=False)
        else:
            with db.transaction() as conn:
                conn.execute("UPDATE hosts SET failures = failures + 1 WHERE id = 'h1'")
            counted.append(1)

    counted: list[int] = []
    _race(count_or_reset)
    entries = services.views.audit_log(object_id="h1", event="backoff_reset", limit=10_000)
    cleared = sum(e["details"]["failures"] for e in entries)
    left = services.views.describe("h1")["holds"]["failures"]
    assert cleared + left == len(counted)
