"""The triggers of migration 0006 on real PostgreSQL: when a host was last clean, when its fault
cleared, and the "fault cleared -> up" histogram, from the decisions the tick records.
"""

from __future__ import annotations

from typing import Any

import pytest

from autorecovery.adapters.store import Database, hosts
from models.policy import CLEAN_DECISIONS, UNCLEAN_DECISIONS, Decision
from tests.contract.helpers import at

pytestmark = pytest.mark.integration


def decide(db: Database, code: str, when: float, status: str | None = None) -> dict[str, Any]:
    """Record a decision (and a status) as the tick does; return the host's row."""
    with db.transaction() as conn:
        if status is not None:
            conn.execute(
                "UPDATE hosts SET status = %s, status_changed_at = %s WHERE id = 'h-1'", (status, at(when))
            )
        hosts.record_decisions(conn, [Decision("h-1", code, f"decided at {when}")], at(when))
        row = conn.execute("SELECT clean_since, last_clean_at FROM hosts WHERE id = 'h-1'").fetchone()
    assert row is not None
    return dict(row)


def recovery(db: Database) -> tuple[int, float]:
    """The recovery histogram's count and sum."""
    with db.transaction() as conn:
        n = conn.execute(
            "SELECT coalesce(sum(n), 0) AS n FROM metric_histogram_buckets "
            "WHERE name = 'autorecovery_recovery_seconds'"
        ).fetchone()
        s = conn.execute(
            "SELECT coalesce(sum(value), 0) AS s FROM metric_counters "
            "WHERE name = 'autorecovery_recovery_seconds_sum'"
        ).fetchone()
    assert n is not None and s is not None
    return int(n["n"]), float(s["s"])


def test_fault_cleared_to_up_is_observed_once_and_last_clean_is_kept(pg_database: Database) -> None:
    db = pg_database
    with db.transaction() as conn:
        conn.execute("TRUNCATE reports, hosts, clusters RESTART IDENTITY CASCADE")
        conn.execute("INSERT INTO clusters (id) VALUES ('c-1')")
        conn.execute("INSERT INTO hosts (id, cluster_id, agent_url) VALUES ('h-1', 'c-1', 'http://a')")
    before = recovery(db)
    # A new host's first clean report is not a fault that cleared.
    assert decide(db, "activate", 0)["clean_since"] is None
    decide(db, "healthy", 1, status="up")
    assert recovery(db) == before

    row = decide(db, "has_problems", 10, status="non_operational")
    assert row == {"clean_since": None, "last_clean_at": at(10)}
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO reports (host_id, reported_at, received_at, source, agent_reachable) "
            "VALUES ('h-1', %s, %s, 'pull', true)",
            (at(19), at(20)),
        )
    row = decide(db, "activate", 20)
    assert row == {"clean_since": at(19), "last_clean_at": None}
    assert decide(db, "activation_in_flight", 21)["clean_since"] == at(19)  # unchanged
    decide(db, "healthy", 31, status="up")
    count, total = recovery(db)
    assert count == before[0] + 1
    assert total - before[1] == pytest.approx(12.0)  # report at 19 s, up at 31 s
    assert decide(db, "healthy", 40)["clean_since"] is None


def test_the_cleanness_trigger_copies_no_decision_code(pg_database: Database) -> None:
    """Which decisions are clean is the models' (recorded with each decision), not the trigger's."""
    with pg_database.transaction() as conn:
        row = conn.execute(
            "SELECT pg_get_functiondef('autorecovery_host_cleanness'::regproc) AS body"
        ).fetchone()
    assert row is not None
    copied = [code for code in sorted(CLEAN_DECISIONS | UNCLEAN_DECISIONS) if f"'{code}'" in row["body"]]
    assert copied == []
