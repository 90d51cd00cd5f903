"""Evaluating what changed reaches what evaluating everything reaches, on PostgreSQL.

A seeded generator drives a fleet through ticks: hosts push or are pulled, their reports change
or stay, autorecovery flags flip, clusters pause and resume, hosts are quarantined and backed
off, activations are queued and expire. The same scenario runs twice on one database: once as
the product runs (changed-only), once with every host's last evaluation forgotten before each
tick (a full tick). Every tick's counts, every host's status and decision, and the audit log
must be the same. A steady fleet must, meanwhile, evaluate almost nothing.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import pytest
from psycopg import sql

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import PG_REPOS, Database
from autorecovery.services.monitoring import TickConfig
from models.domain import Cluster, Report
from models.safety import Pause
from tests.contract.conftest import MonitoringFactory
from tests.fakes.ports import FixedClock

pytestmark = pytest.mark.integration


START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CLUSTERS = {
    "c1": Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"})),
    "c2": Cluster("c2", frozenset({"mgmt", "vm"}), frozenset({"sd-2"}), "4.2", frozenset()),
    "c3": Cluster("c3", frozenset(), frozenset(), "0", frozenset()),
}
CFG = TickConfig(
    batch_size=7,
    report_max_age_s=30.0,
    tick_interval_s=10.0,
    queued_ttl_s=25.0,
    reap_running_after_s=60.0,
    quiet_period=False,
    max_silent_share=1.0,
)
TABLES = (
    "audit_log, activations, reports, hosts, clusters, pauses, incidents, storage_domains,"
    " sd_activations, vm_runs, charges, ticks"
)


@pytest.fixture
def pg(pg_database: Database) -> Iterator[Database]:
    yield pg_database


def _reset(db: Database) -> None:
    with db.transaction() as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")  # type: ignore[arg-type]
        conn.execute(
            "UPDATE observer SET last_full_tick_at = NULL, gate = NULL, silent_hosts = 0,"
            " observed_hosts = 0, updated_at = NULL"
        )


def _report(host_id: str, cluster: Cluster, now: datetime, rng: random.Random, source: str) -> Report:
    broken = rng.random() < 0.15
    networks = {n: not (broken and rng.random() < 0.5) for n in cluster.required_networks}
    domains = {d: not (broken and rng.random() < 0.5) for d in cluster.storage_domains}
    return Report(
        host_id=host_id,
        reported_at=now,
        kvm=not (broken and rng.random() < 0.3),
        version="4.5.2",
        cpu_flags=frozenset({"vmx", "sse4_2"}),
        networks=networks,
        storage_domains=domains,
        vms_running=rng.randrange(20),
        mem_free_mb=rng.randrange(1000, 64000),
        source=source,
    )


def run_scenario(
    db: Database, build: MonitoringFactory, seed: int, *, full: bool, ticks: int = 14, cfg: TickConfig = CFG
) -> dict[str, Any]:
    """Run the seeded scenario; return what it left (per-tick counts, hosts, audit)."""
    _reset(db)
    rng = random.Random(seed)
    clock = FixedClock(START)
    agents = FakeAgentClient()
    service = build(db, agents, clock, cfg)
    hosts = {f"h-{i:03d}": rng.choice(sorted(CLUSTERS)) for i in range(40)}
    pushers = {h for h in hosts if rng.random() < 0.6}
    latest: dict[str, Report] = {}
    with db.transaction() as conn:
        for cluster in CLUSTERS.values():
            PG_REPOS.hosts.upsert_cluster(conn, cluster)
        for host_id, cluster_id in hosts.items():
            PG_REPOS.hosts.insert_host(conn, host_id, cluster_id, f"http://{host_id}:1", START, adopt=True)
    trace: list[Any] = []
    evaluated: list[int] = []
    batches: list[int] = []
    for step in range(ticks):
        now = clock()
        for host_id, cluster_id in hosts.items():
            if host_id not in latest or rng.random() < 0.2:  # a new state, else the same again
                latest[host_id] = _report(host_id, CLUSTERS[cluster_id], now, rng, "push")
            latest[host_id] = replace(latest[host_id], reported_at=now, vms_running=rng.randrange(20))
        pushed = [
            replace(latest[h], source="push")
            for h in sorted(pushers)
            if rng.random() < 0.9  # a pusher sometimes misses a tick and is pulled
        ]
        agents.reports = {h: replace(r, source="pull") for h, r in latest.items() if rng.random() < 0.9}
        with db.transaction() as conn:
            PG_REPOS.hosts.upsert_reports(conn, pushed, now)
            _mutate(conn, rng, hosts, now, step)
            if full:
                conn.execute("UPDATE hosts SET eval_key = NULL")
        result = service.tick()
        summary = result.as_dict()
        trace.append(
            {
                k: summary[k]
                for k in (
                    "hosts",
                    "transitions",
                    "enqueued",
                    "capped",
                    "silent",
                    "silent_ids",
                    "gate",
                    "observed",
                    "decisions",
                    "pulled",
                )
            }
        )
        evaluated.append(result.evaluated)
        batches.append(result.batches)
        clock.advance(CFG.tick_interval_s)
    with db.transaction() as conn:
        host_rows = conn.execute(
            "SELECT id, status, reason, detail, last_decision, last_decision_detail, failures,"
            " quarantined_at FROM hosts ORDER BY id"
        ).fetchall()
        audit = conn.execute(
            "SELECT at, object_id, event, actor, reason, details - 'activation_id' AS details"
            " FROM audit_log ORDER BY at, object_id, event, id"
        ).fetchall()
    return {"trace": trace, "hosts": host_rows, "audit": audit, "evaluated": evaluated, "batches": batches}


def _mutate(conn: Any, rng: random.Random, hosts: dict[str, str], now: datetime, step: int) -> None:
    """What operators and activations do between ticks."""
    ids = sorted(hosts)
    for host_id in rng.sample(ids, 2):
        PG_REPOS.hosts.set_autorecovery(conn, host_id, rng.random() < 0.6)
    if rng.random() < 0.1:
        scope = rng.choice(["fleet", *sorted(CLUSTERS)])
        expires = now + timedelta(seconds=rng.choice([5, 15, 25, 60]))
        PG_REPOS.safety.set_pause(conn, Pause(scope, "test", "admin", now, expires))
    if rng.random() < 0.2:
        PG_REPOS.safety.quarantine(conn, rng.choice(ids), now, "flapping")
    out = [row["id"] for row in conn.execute("SELECT id FROM hosts WHERE status <> 'up' ORDER BY id")]
    if out and rng.random() < 0.5:  # an agent claims a fence never issued, or an admin clears it
        conn.execute(
            "UPDATE hosts SET agent_hold = CASE WHEN agent_hold IS NULL THEN 'agent_fence_ahead' END"
            " WHERE id = %(id)s",
            {"id": rng.choice(out)},
        )
    for host_id in rng.sample(out, min(len(out), 3)):  # failed activations back off
        conn.execute(
            "UPDATE hosts SET failures = failures + 1, next_attempt_at = %(at)s WHERE id = %(id)s",
            {"at": now + timedelta(seconds=rng.choice([5, 15, 25, 45])), "id": host_id},
        )
    if step % 2 == 1:  # some queued activations end (their hosts stay out: the init failed)
        conn.execute(
            "UPDATE activations SET state = 'done', outcome = 'up', ended_at = %(now)s"
            " WHERE id IN (SELECT id FROM activations WHERE state = 'queued' ORDER BY host_id LIMIT 3)",
            {"now": now},
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_changed_only_tick_decides_as_a_full_tick(
    pg: Database, build_monitoring: MonitoringFactory, seed: int
) -> None:
    changed = run_scenario(pg, build_monitoring, seed, full=False)
    # The full run cuts every batch by count alone: the hosts that pushed share no bigger batch.
    by_count = replace(CFG, pushed_batch_size=CFG.batch_size)
    full = run_scenario(pg, build_monitoring, seed, full=True, cfg=by_count)
    assert changed["trace"] == full["trace"]
    assert changed["hosts"] == full["hosts"]
    assert changed["audit"] == full["audit"]
    decided = sum(sum(t["decisions"].values()) for t in changed["trace"])
    assert decided > 0 and any(t["transitions"] for t in changed["trace"])
    assert any(t["enqueued"] for t in changed["trace"])
    # Fewer evaluations, the same outcome: the full run evaluates every host every tick.
    assert sum(changed["evaluated"]) < sum(full["evaluated"]) == sum(t["hosts"] for t in full["trace"])
    assert max(changed["batches"]) < min(full["batches"])  # the hosts that pushed shared batches


def test_a_steady_pushing_fleet_evaluates_nothing_and_writes_no_host(
    pg: Database, build_monitoring: MonitoringFactory
) -> None:
    _reset(pg)
    clock = FixedClock(START)
    service = build_monitoring(pg, FakeAgentClient(), clock, CFG)
    cluster = CLUSTERS["c1"]
    rng = random.Random(7)
    with pg.transaction() as conn:
        PG_REPOS.hosts.upsert_cluster(conn, cluster)
        for i in range(30):
            PG_REPOS.hosts.insert_host(conn, f"h-{i:03d}", "c1", "http://h:1", START, adopt=True)
    reports = {f"h-{i:03d}": _report(f"h-{i:03d}", cluster, START, rng, "push") for i in range(30)}
    results = []
    for _ in range(5):
        with pg.transaction() as conn:
            fresh = [replace(r, reported_at=clock(), vms_running=rng.randrange(9)) for r in reports.values()]
            PG_REPOS.hosts.upsert_reports(conn, fresh, clock())
            before = conn.execute(
                "SELECT md5(string_agg(h::text, ',' ORDER BY id)) AS h FROM hosts h"
            ).fetchone()
        results.append(service.tick())
        with pg.transaction() as conn:
            after = conn.execute(
                "SELECT md5(string_agg(h::text, ',' ORDER BY id)) AS h FROM hosts h"
            ).fetchone()
        clock.advance(CFG.tick_interval_s)
    assert [r.hosts for r in results] == [30] * 5
    assert results[0].evaluated == 30  # the first tick evaluates everyone
    assert [r.evaluated for r in results[2:]] == [0, 0, 0]  # then nothing changes
    assert results[-1].decisions == results[1].decisions and sum(results[-1].decisions.values()) == 30
    assert before == after  # the last tick wrote no host row


#: A value other than a column's own, by its type (``{c}``: the column).
_OTHER_VALUE: dict[str, LiteralString] = {
    "text": "coalesce({c}, '') || 'x'",
    "boolean": "NOT coalesce({c}, false)",
    "integer": "coalesce({c}, 0) + 1",
    "bigint": "coalesce({c}, 0) + 1",
    "timestamp with time zone": "coalesce({c}, now()) + interval '1 second'",
}
#: Columns whose other value must be a valid one.
_OTHER_VALID: dict[str, LiteralString] = {
    "cluster_id": "CASE WHEN {c} = 'c1' THEN 'c2' ELSE 'c1' END",  # a foreign key
    "status": "CASE WHEN {c} = 'up' THEN 'maintenance' ELSE 'up' END",  # a checked column
}


def test_every_column_an_evaluation_reads_moves_the_row_version(pg: Database) -> None:
    """The settled test compares versions: a change of any column but the bookkeeping is seen.

    Every column of ``hosts``, present or added later, moves the version (migration 0019's
    trigger lists them) unless it is bookkeeping (``hosts._NOT_EVALUATED``); writing a column's
    own value again moves nothing.
    """
    from autorecovery.adapters.store.hosts import _NOT_EVALUATED

    _reset(pg)
    with pg.transaction() as conn:
        PG_REPOS.hosts.upsert_cluster(conn, CLUSTERS["c1"])
        PG_REPOS.hosts.upsert_cluster(conn, CLUSTERS["c2"])
        PG_REPOS.hosts.insert_host(conn, "h-1", "c1", "http://h:1", START)
        columns = conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'hosts' AND column_name NOT IN ('id', 'row_version')"
            " ORDER BY ordinal_position"
        ).fetchall()
    assert {c["column_name"] for c in columns} >= set(_NOT_EVALUATED)

    def version() -> int:
        with pg.transaction() as conn:
            row = conn.execute("SELECT row_version FROM hosts WHERE id = 'h-1'").fetchone()
        return int(row["row_version"])

    for col in columns:
        name = col["column_name"]
        other = _OTHER_VALID.get(name) or _OTHER_VALUE[col["data_type"]]
        before = version()
        with pg.transaction() as conn:
            column = sql.Identifier(name)
            value = sql.SQL(other).format(c=column)
            conn.execute(sql.SQL("UPDATE hosts SET {c} = {v}").format(c=column, v=value))
        moved = version() - before
        assert moved == (0 if name in _NOT_EVALUATED else 1), name
        with pg.transaction() as conn:
            conn.execute(sql.SQL("UPDATE hosts SET {c} = {c}").format(c=sql.Identifier(name)))
        assert version() == before + moved, f"{name} written again as it was"
