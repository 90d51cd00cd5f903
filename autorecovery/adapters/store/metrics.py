"""Counts for ``/metrics`` that no service needs: hosts per cluster, the monotonic counters and
histograms that triggers keep (migration 0006), holds, incidents, pauses, the observer, the error
state and storage domains.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from autorecovery.adapters.store.db import Conn, run
from autorecovery.adapters.store.safety import held_hosts
from models.domain import HostStatus

HOST_STATUSES = [s.value for s in HostStatus]
#: Out of service by a fault, not by an admin (maintenance) and not new (unassigned).
DOWN = (HostStatus.NON_OPERATIONAL, HostStatus.NON_RESPONSIVE, HostStatus.ERROR, HostStatus.INITIALIZING)
DOWN_STATUSES = tuple(s.value for s in DOWN)


def safety_gauges(conn: Conn, now: datetime) -> dict[str, Any]:
    """Return what gates automatic activation, counted for a scrape.

    Returns:
        ``quarantined``, ``in_backoff`` (no attempt before a time still to come), ``capped``
        (last decision), ``incidents_open``, the observer's ``gate``, ``silent_hosts``,
        ``observed_hosts`` and ``last_full_tick_at``; ``pauses``, the scopes paused at ``now``;
        ``held``, hosts by hold and status (up hosts too); ``down_longest``, by cluster, how long
        its longest-down host has been out of service (0 when none) and how many are out;
        ``in_flight``, activations queued or running for every cluster (0 included).
    """
    row = run(
        conn,
        """
        SELECT
            (SELECT count(*) FROM hosts WHERE quarantined_at IS NOT NULL) AS quarantined,
            (SELECT count(*) FROM hosts WHERE next_attempt_at > %(now)s) AS in_backoff,
            (SELECT count(*) FROM hosts WHERE last_decision = 'capped') AS capped,
            (SELECT count(*) FROM hosts WHERE agent_hold IS NOT NULL) AS agent_fence_ahead,
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
    found["held"] = held_hosts(conn, now, 0)
    found["down_longest"] = {
        r["cluster_id"]: (r["longest_s"], int(r["n"]))
        for r in run(
            conn,
            """
            SELECT c.id AS cluster_id,
                   coalesce(max(extract(epoch FROM %(now)s - h.status_changed_at)), 0)::float AS longest_s,
                   count(h.id) AS n
            FROM clusters c
            LEFT JOIN hosts h ON h.cluster_id = c.id AND h.status = ANY(%(down)s)
            GROUP BY c.id ORDER BY c.id
            """,
            {"now": now, "down": list(DOWN_STATUSES)},
        ).fetchall()
    }
    found["in_flight"] = {
        r["cluster_id"]: int(r["n"])
        for r in run(
            conn,
            """
            SELECT c.id AS cluster_id, count(a.id) AS n
            FROM clusters c
            LEFT JOIN hosts h ON h.cluster_id = c.id
            LEFT JOIN activations a ON a.host_id = h.id AND a.state IN ('queued', 'sending', 'sent')
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
    found["sd_in_flight"] = int(
        run(
            conn, "SELECT count(*) AS n FROM sd_activations WHERE state IN ('queued', 'sending', 'sent')"
        ).fetchone()["n"]  # type: ignore[index]
    )
    return found


def fleet_gauges(conn: Conn) -> dict[str, Any]:
    """Return hosts by cluster and status, and every counter and histogram, for a scrape.

    Returns:
        ``hosts``: rows of ``cluster``, ``status``, ``n`` (every status of every cluster, 0
        included); ``counters``: rows of ``name``, ``labels`` (a dict) and ``value``, summed over
        shards; ``histograms``: name -> ``{"buckets": [(le, cumulative n), ...], "sum": s}``,
        every bound listed (``inf`` last).
    """
    hosts = run(
        conn,
        """
        SELECT c.id AS cluster, s.status, count(h.id) AS n
        FROM clusters c
        CROSS JOIN unnest(%(statuses)s::text[]) AS s(status)
        LEFT JOIN hosts h ON h.cluster_id = c.id AND h.status = s.status
        GROUP BY c.id, s.status ORDER BY 1, 2
        """,
        {"statuses": HOST_STATUSES},
    ).fetchall()
    counters = run(
        conn,
        "SELECT name, labels, sum(value) AS value FROM metric_counters GROUP BY name, labels ORDER BY 1, 2",
    ).fetchall()
    sums = {r["name"]: float(r["value"]) for r in counters if r["name"].endswith("_sum")}
    histograms: dict[str, dict[str, Any]] = {}
    for r in run(
        conn,
        """
        SELECT b.name, b.le,
               sum(coalesce(sum(h.n), 0)) OVER (PARTITION BY b.name ORDER BY b.le) AS n
        FROM metric_histogram_bounds b
        LEFT JOIN metric_histogram_buckets h ON h.name = b.name AND h.le = b.le
        GROUP BY b.name, b.le ORDER BY 1, 2
        """,
    ).fetchall():
        found = histograms.setdefault(r["name"], {"buckets": [], "sum": sums.get(r["name"] + "_sum", 0.0)})
        found["buckets"].append((float(r["le"]), int(r["n"])))
    return {
        "hosts": hosts,
        "counters": [r for r in counters if not r["name"].endswith("_sum")],
        "histograms": histograms,
    }
