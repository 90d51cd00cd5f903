"""Counts for ``/metrics`` that no service needs: holds, incidents, pauses, the observer, the error
state and storage domains.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from autorecovery.adapters.store.db import Conn, run


def safety_gauges(conn: Conn, now: datetime) -> dict[str, Any]:
    """Return what gates automatic activation, counted for a scrape.

    Returns:
        ``quarantined``, ``in_backoff`` (no attempt before a time still to come), ``capped``
        (last decision), ``incidents_open``, the observer's ``gate``, ``silent_hosts``,
        ``observed_hosts`` and ``last_full_tick_at``; ``pauses``, the scopes paused at ``now``;
        ``in_flight``, activations queued or running for every cluster (0 included).
    """
    row = run(
        conn,
        """
        SELECT
            (SELECT count(*) FROM hosts WHERE quarantined_at IS NOT NULL) AS quarantined,
            (SELECT count(*) FROM hosts WHERE next_attempt_at > %(now)s) AS in_backoff,
            (SELECT count(*) FROM hosts WHERE last_decision = 'capped') AS capped,
            (SELECT count(*) FROM incidents WHERE closed_at IS NULL) AS incidents_open,
            o.gate, o.silent_hosts, o.observed_hosts, o.last_full_tick_at
        FROM (SELECT 1) AS one LEFT JOIN observer o ON o.id = 1
        """,
        {"now": now},
    ).fetchone()
    found: dict[str, Any] = dict(row) if row else {}
    found["pauses"] = [
        r["scope"]
        for r in run(
            conn,
            "SELECT scope FROM pauses WHERE expires_at IS NULL OR expires_at > %(now)s ORDER BY scope",
            {"now": now},
        ).fetchall()
    ]
    found["in_flight"] = {
        r["cluster_id"]: int(r["n"])
        for r in run(
            conn,
            """
            SELECT c.id AS cluster_id, count(a.id) AS n
            FROM clusters c
            LEFT JOIN hosts h ON h.cluster_id = c.id
            LEFT JOIN activations a ON a.host_id = h.id AND a.state IN ('queued', 'running')
            GROUP BY c.id ORDER BY c.id
            """,
        ).fetchall()
    }
    return found


def error_and_storage_gauges(conn: Conn, charges_since: datetime) -> dict[str, Any]:
    """Return the error state's and the storage domains' counts, for a scrape.

    Returns:
        ``hosts_in_error``; ``charges_recent``, charges laid since ``charges_since`` (those
        older have decayed); ``storage_domains``, domains by status; ``sd_activations``,
        domain activations by ``trigger`` and ``outcome`` (the state while in flight) with ``n``.
    """
    row = run(
        conn,
        """
        SELECT (SELECT count(*) FROM hosts WHERE status = 'error') AS hosts_in_error,
               (SELECT count(*) FROM charges WHERE at >= %(since)s) AS charges_recent
        """,
        {"since": charges_since},
    ).fetchone()
    found: dict[str, Any] = {k: int(v) for k, v in dict(row or {}).items()}
    found["storage_domains"] = {
        r["status"]: int(r["n"])
        for r in run(conn, "SELECT status, count(*) AS n FROM storage_domains GROUP BY status").fetchall()
    }
    found["sd_activations"] = run(
        conn,
        """
        SELECT trigger, coalesce(outcome, state) AS outcome, count(*) AS n FROM sd_activations
        GROUP BY trigger, coalesce(outcome, state) ORDER BY 1, 2
        """,
    ).fetchall()
    return found
