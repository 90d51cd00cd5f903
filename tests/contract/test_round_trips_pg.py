"""A 500-host batch costs at most 5 round trips to PostgreSQL, counted on the wire (libpq trace)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import psycopg
import pytest

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import PG_REPOS, Database
from autorecovery.adapters.store import db as db_module
from autorecovery.adapters.store.db import affected
from autorecovery.services.monitoring import BatchSpec, TickConfig
from bench.roundtrips import RoundTrips
from models.domain import Cluster, Report
from tests.contract.conftest import MonitoringFactory
from tests.fakes.ports import FixedClock

pytestmark = pytest.mark.integration


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}))
HOSTS = 1000
CFG = TickConfig(  # batches of 500 hosts, whether they pushed their reports or are pulled
    batch_size=500,
    report_max_age_s=30.0,
    tick_interval_s=10.0,
    queued_ttl_s=60.0,
    reap_running_after_s=60.0,
    pushed_batch_size=500,
)


def _report(host_id: str, now: datetime, source: str) -> Report:
    return Report(
        host_id=host_id,
        reported_at=now,
        kvm=True,
        version="4.5.2",
        networks={"mgmt": True},
        storage_domains={"sd-1": True},
        source=source,
    )


@pytest.mark.parametrize("mode", ["push", "pull"])
def test_a_batch_makes_at_most_five_round_trips(
    traced: tuple[Database, RoundTrips], build_monitoring: MonitoringFactory, mode: str
) -> None:
    db, trips = traced
    clock = FixedClock(NOW)
    ids = [f"h-{i:05d}" for i in range(HOSTS)]
    agents = FakeAgentClient()
    sent: list[BatchSpec] = []
    service = build_monitoring(db, agents, clock, CFG, sent.append)
    with db.transaction() as conn:
        PG_REPOS.hosts.upsert_cluster(conn, CLUSTER)
        for host_id in ids:
            PG_REPOS.hosts.insert_host(conn, host_id, "c1", "http://agent:1", NOW, adopt=True)
    per_batch: list[int] = []
    for _ in range(3):  # the first tick changes every host (adopted: up); then a steady fleet
        now = clock()
        reports = [_report(h, now, mode) for h in ids]
        if mode == "push":
            with db.transaction() as conn:
                PG_REPOS.hosts.upsert_reports(conn, reports, now)
        else:
            agents.reports = {r.host_id: r for r in reports}
        sent.clear()
        service.tick()
        assert len(sent) == 2
        trips.take()
        assert service.run_batch(sent[0]) is None  # the first batch: it does not close the tick
        per_batch.append(trips.take())
        service.run_batch(sent[1])
        clock.advance(CFG.tick_interval_s)
    assert max(per_batch) <= 5, per_batch
    # One pipeline to read a few columns; one more to read the whole rows of the hosts evaluated
    # again, only when there are any (the first two ticks: every host's row changed, adopted
    # then up); one transaction to write: the tick's row lock and state first (a batch of a tick
    # that ended writes nothing), then the writes, read only when a status changed (the first
    # tick: their count goes in the summary), then the batch recorded in its tick with the
    # commit; and a pool check when the connection was idle for a while (not here: the
    # coordinator just gave it back).
    assert per_batch == [5, 4, 3]


def test_the_counter_sees_transactions_and_pipelines(
    traced: tuple[Database, RoundTrips], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, trips = traced
    monkeypatch.setattr(db_module, "RECHECK_AFTER_S", 0.0)  # every checkout checks
    trips.take()
    with db.transaction() as conn:  # pool check, then BEGIN, two statements, COMMIT together
        conn.execute("SELECT 1")
        conn.execute("SELECT %(x)s::int", {"x": 2})
    assert trips.take() == 2
    with db.transaction() as conn:  # pool check; a read in the middle waits, then the rest
        assert conn.execute("SELECT 1 AS x").fetchone() == {"x": 1}
        conn.execute("SELECT 2")
    assert trips.take() == 3
    with db.held() as held:  # pool check, then one round trip for the whole pipeline
        with db.pipeline(held) as conn:
            first = conn.execute("SELECT 1 AS x")
            second = conn.execute("SELECT %(x)s::int AS y", {"x": 2})
        assert first.fetchone() == {"x": 1} and second.fetchone() == {"y": 2}
    assert trips.take() == 2


def test_a_connection_idle_for_a_while_is_checked_again(traced: tuple[Database, RoundTrips]) -> None:
    db, trips = traced
    with db.transaction() as conn:
        conn.execute("SELECT 1")
    trips.take()
    with db.transaction() as conn:  # just given back: no check (BEGIN, statement, COMMIT at once)
        conn.execute("SELECT 1")
    assert trips.take() == 1
    time.sleep(db_module.RECHECK_AFTER_S + 0.1)
    with db.transaction() as conn:  # idle past the limit: checked first
        conn.execute("SELECT 1")
    assert trips.take() == 2


def test_a_transaction_stays_one_unit_though_pipelined(traced: tuple[Database, RoundTrips]) -> None:
    """BEGIN goes with the first statement and COMMIT with the last; what a block reads in the
    middle (a fetch, ``affected``) does not commit what came before it, and an error anywhere
    leaves nothing of the block."""
    db, _ = traced
    with db.transaction() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pipelined (x int)")
        conn.execute("TRUNCATE pipelined")
        conn.execute("INSERT INTO pipelined VALUES (1), (2)")
    with pytest.raises(RuntimeError), db.transaction() as conn:
        assert affected(conn.execute("UPDATE pipelined SET x = x + 10")) == 2
        assert conn.execute("SELECT sum(x) AS s FROM pipelined").fetchone() == {"s": 23}
        raise RuntimeError("after a read in the middle")
    with pytest.raises(psycopg.errors.DivisionByZero), db.transaction() as conn:
        conn.execute("UPDATE pipelined SET x = x + 100")
        conn.execute("SELECT 1 / 0")  # refused by the server: seen only when the block ends
    with db.transaction() as conn:
        assert conn.execute("SELECT sum(x) AS s FROM pipelined").fetchone() == {"s": 3}
        assert affected(conn.execute("DELETE FROM pipelined WHERE x = 1")) == 1
        assert affected(conn.execute("DELETE FROM pipelined WHERE x = 1")) == 0
    with db.transaction() as conn:
        assert conn.execute("SELECT count(*) AS n FROM pipelined").fetchone() == {"n": 1}
        conn.execute("DROP TABLE pipelined")


@pytest.mark.timeout(60)
def test_reading_a_row_count_after_a_large_statement_does_not_hang(
    traced: tuple[Database, RoundTrips],
) -> None:
    """A statement larger than the socket's buffers (a bulk push of thousands of reports), then
    its row count read in the middle of the pipelined transaction: psycopg's ``Pipeline.sync()``
    waited for good there (the server waiting for the rest of the statement)."""
    db, _ = traced
    big = "x" * (20 * 1024 * 1024)
    with db.transaction() as conn:
        conn.execute("CREATE TEMP TABLE big (x text) ON COMMIT DROP")
        assert affected(conn.execute("INSERT INTO big VALUES (%(x)s), (%(x)s)", {"x": big})) == 2
        assert conn.execute("SELECT count(*) AS n FROM big").fetchone() == {"n": 2}
