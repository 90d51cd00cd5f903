"""Retention on real PostgreSQL: the pruning deletes old history in batches, audits one summary,
and never lowers a metric counter; ``autorecovery prune --dry-run`` only counts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from psycopg import sql

from autorecovery.adapters.store import Database
from autorecovery.services.retention import RetentionPolicy, RetentionService
from tests.contract.helpers import T0, at
from tests.support.processes import REPO
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

OLD = T0 - timedelta(days=40)
POLICY = RetentionPolicy(audit_days=30, activations_days=30, vm_runs_days=30, batch_size=2)
KEEP = {"audit_log": 1, "activations": 1, "sd_activations": 0, "ticks": 1, "charges": 1, "vm_runs": 1}
PRUNED = {"audit_log": 5, "activations": 5, "sd_activations": 6, "ticks": 5, "charges": 5, "vm_runs": 5}


@pytest.fixture
def seeded(pg_database: Database) -> Database:
    """Five old and one recent row of each kind (and an in-flight old activation, which stays)."""
    with pg_database.transaction() as conn:
        conn.execute(
            "TRUNCATE audit_log, activations, reports, hosts, clusters, vm_runs, charges,"
            " sd_activations, storage_domains, ticks RESTART IDENTITY CASCADE"
        )
        conn.execute("INSERT INTO clusters (id) VALUES ('c-1')")
        conn.execute("INSERT INTO hosts (id, cluster_id, agent_url) VALUES ('h-1', 'c-1', 'http://a')")
        conn.execute("INSERT INTO storage_domains (id) VALUES ('sd-1')")
        for i, when in enumerate([OLD] * 5 + [T0]):
            conn.execute(
                "INSERT INTO audit_log (at, object_type, object_id, event, actor) "
                "VALUES (%s, 'host', 'h-1', 'x', 'test')",
                (when,),
            )
            conn.execute(
                "INSERT INTO activations (id, host_id, trigger, actor, state, queued_at) "
                "VALUES (%s, 'h-1', 'auto', 'auto', 'queued', %s)",
                (f"a-{i}", when),
            )
            conn.execute(
                "UPDATE activations SET state = 'done', outcome = 'up', started_at = %(t)s,"
                " ended_at = %(t)s WHERE id = %(id)s",
                {"t": when, "id": f"a-{i}"},
            )
            conn.execute(
                "INSERT INTO ticks (id, state, batches, started_at, ended_at) "
                "VALUES (%s, 'done', 1, %s, %s)",
                (f"t-{i}", when, when),
            )
            conn.execute(
                "INSERT INTO sd_activations (id, sd_id, trigger, actor, state, outcome, queued_at,"
                " ended_at) VALUES (%s, 'sd-1', 'auto', 'auto', 'failed', 'failed', %s, %s)",
                (f"s-{i}", OLD, OLD),
            )
            run = conn.execute(
                "INSERT INTO vm_runs (vm_id, attempts, actor, received_at) "
                "VALUES ('vm', '[]', 'test', %s) RETURNING id",
                (when,),
            ).fetchone()
            assert run is not None
            conn.execute(
                "INSERT INTO charges (host_id, vm_run_id, vm_id, at) VALUES ('h-1', %s, 'vm', %s)",
                (run["id"], when),
            )
        conn.execute(
            "INSERT INTO activations (id, host_id, trigger, actor, state, queued_at) "
            "VALUES ('in-flight', 'h-1', 'auto', 'auto', 'queued', %s)",
            (OLD,),
        )
    return pg_database


def counts(db: Database) -> dict[str, int]:
    with db.transaction() as conn:
        return {
            table: int(
                conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(sql.Identifier(table)))
                .fetchone()["n"]  # type: ignore[index]
            )
            for table in KEEP
        }


def counters(db: Database) -> list[dict[str, Any]]:
    with db.transaction() as conn:
        return conn.execute(
            "SELECT name, labels, sum(value) AS v FROM metric_counters GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()


def test_dry_run_counts_and_deletes_nothing(seeded: Database) -> None:
    before = counts(seeded)
    summary = RetentionService(seeded, lambda: at(0), POLICY).prune(dry_run=True)
    assert summary["rows"] == PRUNED
    assert counts(seeded) == before


def test_prune_deletes_old_rows_in_batches_and_audits_one_summary(seeded: Database) -> None:
    metrics = counters(seeded)
    assert any(r["name"] == "autorecovery_activations" for r in metrics)
    summary = RetentionService(seeded, lambda: at(0), POLICY).prune(actor="test")
    assert summary["rows"] == PRUNED
    left = counts(seeded)
    assert left == {**KEEP, "activations": 2, "audit_log": 2}  # + in-flight; + the summary
    with seeded.transaction() as conn:
        entry = conn.execute(
            "SELECT actor, details FROM audit_log WHERE object_type = 'retention'"
        ).fetchone()
        assert conn.execute("SELECT 1 FROM activations WHERE id = 'in-flight'").fetchone()
    assert entry is not None and entry["actor"] == "test"
    assert entry["details"]["rows"]["activations"] == 5
    assert counters(seeded) == metrics
    again = RetentionService(seeded, lambda: at(0), POLICY).prune()
    assert set(again["rows"].values()) == {0}


def test_cli_prune_dry_run_shows_what_would_go(seeded: Database, pg_servers: Servers) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORECOVERY_")}
    env.update(pg_servers.env(), AUTORECOVERY_RETENTION_AUDIT_DAYS="1")
    before = counts(seeded)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "prune", "--dry-run", "--json"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["dry_run"] is True and summary["rows"]["audit_log"] == 6
    assert counts(seeded) == before
    text = subprocess.run(
        [sys.executable, "-m", "cli", "prune", "--dry-run"],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    ).stdout
    assert "audit_log" in text and "would delete" in text
