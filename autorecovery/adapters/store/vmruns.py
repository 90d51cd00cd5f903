"""VM runs as schedulers report them, the charges they lay on hosts, and the error state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.types.json import Jsonb

from autorecovery.adapters.store.db import Conn, affected, run
from models.placement import Attempt


def add_run(conn: Conn, vm_id: str, attempts: Sequence[Attempt], actor: str, now: datetime) -> int:
    """Store a VM run; return its id."""
    row = run(
        conn,
        """
        INSERT INTO vm_runs (vm_id, attempts, actor, received_at)
        VALUES (%(vm)s, %(attempts)s, %(actor)s, %(now)s) RETURNING id
        """,
        {
            "vm": vm_id,
            "actor": actor,
            "now": now,
            "attempts": Jsonb([{"host": a.host_id, "ok": a.ok, "error": a.error} for a in attempts]),
        },
    ).fetchone()
    assert row is not None
    return int(row["id"])


def add_charges(
    conn: Conn,
    run_id: int,
    vm_id: str,
    charged: Sequence[Attempt],
    now: datetime,
    window_start: datetime,
) -> dict[str, int]:
    """Charge hosts for a run and return each charged host's charges within the window."""
    if not charged:
        return {}
    rows = run(
        conn,
        """
        WITH ins AS (
            INSERT INTO charges (host_id, vm_run_id, vm_id, error, at)
            SELECT c.host, %(run)s, %(vm)s, c.error, %(now)s
            FROM jsonb_to_recordset(%(rows)s) AS c(host text, error text)
            RETURNING host_id)
        SELECT host_id, (SELECT count(*) FROM charges c WHERE c.host_id = ins.host_id
                         AND c.at >= %(since)s) + 1 AS n
        FROM ins
        """,
        {
            "run": run_id,
            "vm": vm_id,
            "now": now,
            "since": window_start,
            "rows": Jsonb([{"host": a.host_id, "error": a.error} for a in charged]),
        },
    ).fetchall()
    return {r["host_id"]: int(r["n"]) for r in rows}


def recent_charges(conn: Conn, since: datetime, cluster_id: str | None = None) -> dict[str, int]:
    """Return charges per host since ``since`` (older ones have decayed)."""
    rows = run(
        conn,
        """
        SELECT c.host_id, count(*) AS n FROM charges c JOIN hosts h ON h.id = c.host_id
        WHERE c.at >= %(since)s AND (%(cluster)s::text IS NULL OR h.cluster_id = %(cluster)s)
        GROUP BY c.host_id
        """,
        {"since": since, "cluster": cluster_id},
    ).fetchall()
    return {r["host_id"]: int(r["n"]) for r in rows}


def enter_error(
    conn: Conn, host_ids: Sequence[str], until: datetime, now: datetime, detail: str
) -> list[str]:
    """Put up hosts in ``error`` until ``until``, auditing each; return those that changed."""
    if not host_ids:
        return []
    rows = run(
        conn,
        """
        WITH changed AS (
            UPDATE hosts SET status = 'error', reason = 'vm_launch_failures', detail = %(detail)s,
                error_until = %(until)s, status_changed_at = %(now)s
            WHERE id = ANY(%(ids)s) AND status = 'up'
            RETURNING id)
        INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
        SELECT %(now)s, 'host', id, 'status_changed', 'auto', 'vm_launch_failures',
               jsonb_build_object('from', 'up', 'to', 'error', 'detail', %(detail)s,
                                  'until', %(until)s)
        FROM changed RETURNING object_id
        """,
        {"ids": list(host_ids), "until": until, "now": now, "detail": detail},
    ).fetchall()
    return [r["object_id"] for r in rows]


def clear_charges(conn: Conn, host_id: str) -> int:
    """Forget a host's charges and its error period (it came back healthy)."""
    run(conn, "UPDATE hosts SET error_until = NULL WHERE id = %(id)s", {"id": host_id})
    cur = run(conn, "DELETE FROM charges WHERE host_id = %(id)s", {"id": host_id})
    return affected(cur)


def known_hosts(conn: Conn, host_ids: Sequence[str]) -> set[str]:
    """Return which of ``host_ids`` are registered."""
    rows = run(conn, "SELECT id FROM hosts WHERE id = ANY(%(ids)s)", {"ids": list(host_ids)}).fetchall()
    return {r["id"] for r in rows}
