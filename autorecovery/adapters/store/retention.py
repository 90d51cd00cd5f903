"""Retention: what the pruning deletes, table by table, in bounded batches.

Metric counters and histograms live in their own tables (migration 0006), so deleting history
never lowers them.
"""

from __future__ import annotations

from datetime import datetime
from typing import LiteralString

from autorecovery.adapters.store.db import Conn, affected, run

#: kind -> (count of what is older than the cutoff, delete of one batch of it).
_STATEMENTS: dict[str, tuple[LiteralString, LiteralString]] = {
    "audit_log": (
        "SELECT count(*) AS n FROM audit_log WHERE at < %(before)s",
        """
        DELETE FROM audit_log WHERE id IN (
            SELECT id FROM audit_log WHERE at < %(before)s ORDER BY id LIMIT %(limit)s)
        """,
    ),
    "activations": (
        "SELECT count(*) AS n FROM activations WHERE ended_at < %(before)s"
        " AND state NOT IN ('queued', 'sending', 'sent')",
        """
        DELETE FROM activations WHERE id IN (
            SELECT id FROM activations WHERE ended_at < %(before)s
              AND state NOT IN ('queued', 'sending', 'sent') LIMIT %(limit)s)
        """,
    ),
    "sd_activations": (
        "SELECT count(*) AS n FROM sd_activations WHERE ended_at < %(before)s"
        " AND state NOT IN ('queued', 'sending', 'sent')",
        """
        DELETE FROM sd_activations WHERE id IN (
            SELECT id FROM sd_activations WHERE ended_at < %(before)s
              AND state NOT IN ('queued', 'sending', 'sent') LIMIT %(limit)s)
        """,
    ),
    "charges": (
        "SELECT count(*) AS n FROM charges WHERE at < %(before)s",
        """
        DELETE FROM charges WHERE id IN (
            SELECT id FROM charges WHERE at < %(before)s ORDER BY id LIMIT %(limit)s)
        """,
    ),
    # Finished fan-out ticks (8,640 a day at 10 s); their batches go with them (ON DELETE CASCADE).
    "ticks": (
        "SELECT count(*) AS n FROM ticks WHERE started_at < %(before)s"
        " AND state IN ('done', 'abandoned')",
        """
        DELETE FROM ticks WHERE id IN (
            SELECT id FROM ticks WHERE started_at < %(before)s
              AND state IN ('done', 'abandoned') LIMIT %(limit)s)
        """,
    ),
    # After the charges: a run's remaining (newer) charges go with it (ON DELETE CASCADE).
    "vm_runs": (
        "SELECT count(*) AS n FROM vm_runs WHERE received_at < %(before)s",
        """
        DELETE FROM vm_runs WHERE id IN (
            SELECT id FROM vm_runs WHERE received_at < %(before)s ORDER BY id LIMIT %(limit)s)
        """,
    ),
}

KINDS = tuple(_STATEMENTS)


def count_older(conn: Conn, kind: str, before: datetime) -> int:
    """Count the rows of ``kind`` that a pruning with this cutoff would delete."""
    row = run(conn, _STATEMENTS[kind][0], {"before": before}).fetchone()
    return int(row["n"]) if row else 0


def delete_batch(conn: Conn, kind: str, before: datetime, limit: int) -> int:
    """Delete at most ``limit`` rows of ``kind`` older than ``before``; return how many."""
    return affected(run(conn, _STATEMENTS[kind][1], {"before": before, "limit": limit}))
