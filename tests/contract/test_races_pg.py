"""Guarded writes two actors reach at once, on real PostgreSQL: two connections, a barrier.

The in-memory fake runs one transaction at a time and cannot show these races. Each test holds
its first actor's transaction open past the barrier, so that without its guard (a lock, a fence)
the second actor would read the same state and both would write.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import PG_REPOS, Database, safety, ticks
from autorecovery.bootstrap import Adapters, build_services
from autorecovery.services.fleet import HostSpec
from autorecovery.services.monitoring.config import TickResult
from autorecovery.settings import Settings
from models.domain import Cluster
from models.policy import Decision
from models.safety import Candidate
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
HOLD_S = 0.5


@pytest.fixture
def db(pg_servers: Servers) -> Iterator[Database]:
    pool = Database(pg_servers.database_url, max_size=4)
    pool.open(wait_s=10.0)
    with pool.transaction() as conn:
        conn.execute(
            "TRUNCATE audit_log, activations, reports, hosts, clusters, ticks, sd_activations, "
            "storage_domains RESTART IDENTITY CASCADE"
        )
    yield pool
    pool.close()


def _both(first: Callable[[], Any], second: Callable[[], Any]) -> list[Any]:
    """Run two actors in threads started together; return what each returned."""
    start = threading.Barrier(2)
    out: list[Any] = [None, None]
    errors: list[BaseException] = []

    def actor(i: int, act: Callable[[], Any]) -> None:
        start.wait()
        try:
            out[i] = act()
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=actor, args=(i, a)) for i, a in enumerate((first, second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return out


def test_two_coordinators_claiming_at_once_claim_one_tick(db: Database) -> None:
    """Mutation (defect 9): the claim without its advisory lock lets both claim."""

    def claim(tick_id: str) -> bool:
        with db.transaction() as conn:
            claimed = ticks.claim(conn, tick_id, batch_size=10, min_spacing_s=5.0, deadline_s=30.0)
            time.sleep(HOLD_S)  # the other claim reads now, unless the lock makes it wait
        return claimed.refused is None

    results = _both(lambda: claim("tick-a"), lambda: claim("tick-b"))
    assert sorted(results) == [False, True]
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM ticks").fetchone()["n"] == 1  # type: ignore[index]


class _MeetingSafety:
    """The safety repository, with both admissions meeting right after they count in flight."""

    def __init__(self) -> None:
        self.meet = threading.Barrier(2)

    def __getattr__(self, name: str) -> Any:
        return getattr(safety, name)

    def in_flight_by_cluster(self, conn: Any) -> dict[str, int]:
        counted = safety.in_flight_by_cluster(conn)
        with contextlib.suppress(threading.BrokenBarrierError):
            self.meet.wait(timeout=HOLD_S)  # with the lock, the other cannot get here yet
        return counted


def test_two_admissions_at_once_keep_the_cluster_cap(db: Database, pg_servers: Servers) -> None:
    """Mutation (defect 9): admission without its lock lets both fill the same slot."""
    repos = replace(PG_REPOS, safety=_MeetingSafety())  # type: ignore[arg-type]
    client = redis.Redis.from_url(pg_servers.redis_url)
    try:
        settings = Settings.model_validate({"cluster_cap": "1", "fleet_cap": 10})
        built = build_services(
            settings,
            Adapters(db=db, redis=client, agents=FakeAgentClient(), repos=repos),
            enqueue=lambda *_: None,
        )
        built.fleet.register_cluster(Cluster("c1"), "admin")
        built.fleet.register_hosts([HostSpec(h, "c1", f"http://{h}:1") for h in ("h1", "h2")], "admin")
        with db.transaction() as conn:
            conn.execute("UPDATE hosts SET status = 'non_operational'")

        def admit(host_id: str) -> None:
            candidate = Candidate(host_id, "c1", NOW)
            decision = Decision(host_id, "recoverable", "no problem")
            result = TickResult(tick_id=str(uuid.uuid4()))
            built.monitoring.closer._admit([(candidate, decision)], NOW, result)

        _both(lambda: admit("h1"), lambda: admit("h2"))
    finally:
        client.close()
    with db.transaction() as conn:
        in_flight = conn.execute(
            "SELECT count(*) AS n FROM activations WHERE state IN ('queued', 'sending', 'sent')"
        ).fetchone()
    assert in_flight is not None and in_flight["n"] == 1


def test_a_sent_record_reaped_while_its_step_closes_it_is_closed_once(db: Database) -> None:
    """The close (fenced) and the reaper (fence bump) race on one sent record: one of them wins."""
    with db.transaction() as conn:
        PG_REPOS.hosts.upsert_cluster(conn, Cluster("c1"))
        PG_REPOS.hosts.insert_host(conn, "h1", "c1", "http://h1:1", NOW)
        PG_REPOS.activations.create_many(
            conn, [("a1", "h1")], trigger="auto", actor="auto", now=NOW, statuses=["unassigned"], reason="t"
        )
        fence = PG_REPOS.activations.begin(conn, "a1", NOW)
        assert fence is not None
        assert PG_REPOS.activations.mark_sent(
            conn, "a1", fence=fence, answer="running", protocol=2, hold_s=-10
        )

    def close() -> bool:
        with db.transaction() as conn:
            closed = PG_REPOS.activations.finish(
                conn, "a1", state="done", outcome="up", reason=None, detail="ok", now=NOW, fence=fence
            )
            time.sleep(HOLD_S)
        return closed

    def reap() -> bool:
        with db.transaction() as conn:
            reaped = PG_REPOS.activations.reap(conn, now=NOW, queued_ttl_s=60, running_ttl_s=0)
            time.sleep(HOLD_S)
        return bool(reaped)

    results = _both(close, reap)
    assert sorted(results) == [False, True]
    with db.transaction() as conn:
        row = conn.execute("SELECT state FROM activations WHERE id = 'a1'").fetchone()
        audited = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE event = 'activation_abandoned'"
        ).fetchone()
    assert row is not None and audited is not None
    assert (row["state"], audited["n"]) in (("done", 0), ("abandoned", 1))
