"""Hosts and their latest reports; batched statements take JSON arrays of rows.

The hosts repository also serves clusters (``clusters.py``) and fences (``fences.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from autorecovery.adapters.store.clusters import all_clusters as all_clusters
from autorecovery.adapters.store.clusters import delete_cluster as delete_cluster
from autorecovery.adapters.store.clusters import get_cluster as get_cluster
from autorecovery.adapters.store.clusters import upsert_cluster as upsert_cluster
from autorecovery.adapters.store.db import STATEMENTS, Conn, affected, run
from autorecovery.adapters.store.fences import clear_agent_hold as clear_agent_hold
from autorecovery.adapters.store.fences import clear_fence_pending as clear_fence_pending
from autorecovery.adapters.store.fences import fence_push_failed as fence_push_failed
from autorecovery.adapters.store.fences import hold_agent as hold_agent
from autorecovery.adapters.store.fences import hold_init as hold_init
from autorecovery.adapters.store.fences import issued_fence as issued_fence
from autorecovery.adapters.store.fences import pending_fences as pending_fences
from autorecovery.adapters.store.fences import raise_fence as raise_fence
from autorecovery.adapters.store.fences import set_agent_state as set_agent_state
from autorecovery.adapters.store.rows import host_row, report_to_json
from autorecovery.ports import FencePush as FencePush
from autorecovery.ports import HostRow as HostRow  # re-exported: callers import it from here
from autorecovery.ports.rows import BatchHost as BatchHost
from autorecovery.ports.rows import BatchWindow as BatchWindow
from autorecovery.ports.rows import Evaluated as Evaluated
from autorecovery.ports.rows import SettledCount as SettledCount
from models.domain import Report
from models.policy import Decision, Transition
from models.safety import SILENT_EXAMPLES, UNOBSERVED_STATUSES

_HOST_COLUMNS = """
SELECT h.id, h.cluster_id, h.agent_url, h.status, h.reason, h.detail, h.autorecovery,
       h.status_changed_at, h.fence, h.last_decision, h.last_decision_detail, h.last_decision_at,
       h.failures, h.next_attempt_at, h.quarantined_at, h.quarantine_reason, h.subject,
       h.error_until, h.init_hold_until, h.adopt, h.last_clean_at,
       h.agent_hold, h.agent_hold_detail, h.agent_state_id,
       EXISTS (SELECT 1 FROM activations a
               WHERE a.host_id = h.id AND a.state IN ('queued', 'sending', 'sent')) AS in_flight,
       (SELECT a.id FROM activations a
        WHERE a.host_id = h.id AND a.state IN ('queued', 'sending', 'sent')) AS in_flight_id,
       r.reported_at AS r_reported_at, r.received_at AS r_received_at, r.source AS r_source,
       r.agent_reachable AS r_agent_reachable, r.kvm AS r_kvm, r.version AS r_version,
       r.cpu_flags AS r_cpu_flags, r.networks AS r_networks,
       r.storage_domains AS r_storage_domains, r.vms_running AS r_vms_running,
       r.mem_free_mb AS r_mem_free_mb, r.error AS r_error, r.init AS r_init, r.heard_at AS r_heard_at,
       r.repairable AS r_repairable, r.state_unwritable AS r_state_unwritable"""
_HOST_WITH_REPORT = (
    _HOST_COLUMNS
    + """
FROM hosts h LEFT JOIN reports r ON r.host_id = h.id
"""
)

#: Columns of ``hosts`` that are not what an evaluation reads: its own bookkeeping. Changing
#: any other column bumps the row's ``row_version`` (a trigger, migration 0019, lists the same).
_NOT_EVALUATED = ["eval_key", "eval_until", "eval_code", "eval_silent", "last_decision_at"]

#: A batch's hosts with the key of each host's row and activation in flight (``host_key``, see
#: ``models.changes``: the row's version, kept by the store, and the activation's id), and
#: whether its last evaluation still holds (``settled``): the report was pushed within the tick
#: (so it is not pulled), is fresh, the evaluation's time has not run out, and its key is the
#: key of what the host is now. Nothing here reads a whole row or hashes: a steady host costs
#: its share of a join and a comparison.
_HOST_KEY = """
LEFT JOIN activations f ON f.host_id = h.id AND f.state IN ('queued', 'sending', 'sent')
CROSS JOIN LATERAL (
    SELECT h.row_version || '|' || coalesce(f.id, '-') AS host_key) k"""
_SETTLED = """
CROSS JOIN LATERAL (
    SELECT coalesce(r.source = 'push'
                    AND r.reported_at BETWEEN %(pushed_after)s AND %(pushed_before)s
                    AND r.reported_at BETWEEN %(fresh_after)s AND %(fresh_before)s
                    AND h.eval_until > %(later)s
                    AND h.eval_key = k.host_key || '|' || coalesce(r.digest, '-') || '|'
                                     || (SELECT t.context_key FROM ticks t WHERE t.id = %(tick_id)s),
                    false) AS settled) s
"""
_BATCH_KEYED = _HOST_KEY + _SETTLED
#: A batch's range of ids, as index bounds: an ``OR`` with the missing upper bound made the
#: prepared (generic) plan scan the whole table for every batch. The reports are bounded too
#: (PostgreSQL carries equalities across a join, not ranges): else each batch read every report
#: up to its own, or all of them.
_BOUNDED_FROM = """
FROM hosts h LEFT JOIN reports r ON r.host_id = h.id AND r.host_id >= %(lo)s AND r.host_id < %(hi)s"""
_OPEN_FROM = """
FROM hosts h LEFT JOIN reports r ON r.host_id = h.id AND r.host_id >= %(lo)s"""
_BOUNDED = " WHERE h.id >= %(lo)s AND h.id < %(hi)s"
_OPEN = " WHERE h.id >= %(lo)s"


def _host_rows(rows: list[dict[str, Any]]) -> list[HostRow]:
    return [host_row(row) for row in rows]


def insert_host(
    conn: Conn, host_id: str, cluster_id: str, agent_url: str, now: datetime, *, adopt: bool = False
) -> bool:
    """Register a host (unassigned until its first report); return False when the id is taken.

    ``adopt``: the host's first clean report marks it up without an init.
    """
    row = run(
        conn,
        """
        INSERT INTO hosts (id, cluster_id, agent_url, status_changed_at, adopt)
        VALUES (%(id)s, %(cluster)s, %(url)s, %(now)s, %(adopt)s)
        ON CONFLICT (id) DO NOTHING RETURNING id
        """,
        {"id": host_id, "cluster": cluster_id, "url": agent_url, "now": now, "adopt": adopt},
    ).fetchone()
    return row is not None


def existing_ids(conn: Conn, host_ids: Sequence[str]) -> set[str]:
    """Return which of ``host_ids`` are registered."""
    rows = run(conn, "SELECT id FROM hosts WHERE id = ANY(%(ids)s)", {"ids": list(host_ids)}).fetchall()
    return {row["id"] for row in rows}


def get_host(conn: Conn, host_id: str, *, for_update: bool = False) -> HostRow | None:
    """Return a host with its latest report and state, or None."""
    query = _HOST_WITH_REPORT + " WHERE h.id = %(id)s"
    if for_update:
        query += " FOR UPDATE OF h"
    row = run(conn, query, {"id": host_id}).fetchone()
    return _host_rows([row])[0] if row else None


def batch_after(conn: Conn, after: str, limit: int) -> list[HostRow]:
    """Return the next ``limit`` hosts after id ``after``, with their latest reports."""
    rows = run(
        conn,
        _HOST_WITH_REPORT + " WHERE h.id > %(after)s ORDER BY h.id LIMIT %(limit)s",
        {"after": after, "limit": limit},
    ).fetchall()
    return _host_rows(rows)


def batch_between(conn: Conn, lo: str, hi: str | None) -> list[HostRow]:
    """Return the hosts with ``lo <= id < hi`` (no upper bound when ``hi`` is None), with reports."""
    rows = run(
        conn,
        _HOST_WITH_REPORT + " WHERE h.id >= %(lo)s AND (%(hi)s::text IS NULL OR h.id < %(hi)s) ORDER BY h.id",
        {"lo": lo, "hi": hi},
    ).fetchall()
    return _host_rows(rows)


def _window_params(window: BatchWindow) -> dict[str, Any]:
    """The statement parameters of a batch's window."""
    later = window.now + timedelta(seconds=window.margin_s)
    return {
        "tick_id": window.tick_id,
        "later": later,
        "pushed_after": window.now - timedelta(seconds=window.pushed_within_s),
        "pushed_before": window.now + timedelta(seconds=window.max_clock_skew_s),
        "fresh_after": later - timedelta(seconds=window.max_report_age_s),
        "fresh_before": window.now + timedelta(seconds=window.max_report_age_s),
        "unobserved": sorted(s.value for s in UNOBSERVED_STATUSES),
        "examples": SILENT_EXAMPLES,
    }


def batch_rows(conn: Conn, host_ids: Sequence[str]) -> Callable[[], list[HostRow]]:
    """Queue the read of some hosts' whole rows, with the keys ``batch_changed`` reads, by id.

    What a batch reads of the hosts it evaluates again, after its pull: the rest cost it only
    ``batch_changed``'s few columns. Returns a function that gives them once read: in a
    pipeline, nothing waits until it is called.
    """
    if not host_ids:
        return list
    cur = run(
        conn,
        _HOST_COLUMNS
        + """, k.host_key, r.digest AS r_digest, h.eval_key, h.eval_until, h.eval_code,
               h.eval_silent
        FROM hosts h LEFT JOIN reports r ON r.host_id = h.id"""
        + _HOST_KEY
        + " WHERE h.id = ANY(%(ids)s) ORDER BY h.id",
        {"ids": list(host_ids)},
    )
    return lambda: _host_rows(cur.fetchall())


def batch_changed(
    conn: Conn, lo: str, hi: str | None, window: BatchWindow
) -> Callable[[], tuple[list[BatchHost], list[SettledCount]]]:
    """Queue the reads of a batch: its hosts to evaluate, and the counts of the settled ones.

    Returns a function that gives both once read: in a pipeline both statements go in one round
    trip, so nothing is fetched before it is called.
    """
    params = {"lo": lo, "hi": hi, **_window_params(window)}
    keyed = (_OPEN_FROM if hi is None else _BOUNDED_FROM) + _BATCH_KEYED
    where = _OPEN if hi is None else _BOUNDED
    # A few columns as tuples: a steady host is never built into objects (the whole row, its
    # JSON columns decoded, cost a batch ten times as much to read).
    changed = conn.cursor(row_factory=tuple_row)
    STATEMENTS.add()
    changed.execute(
        """
        SELECT h.id, h.cluster_id, h.status, h.agent_url, r.source, r.reported_at, r.digest,
               k.host_key, h.eval_key, h.eval_until, h.eval_code, h.eval_silent"""
        + keyed
        + where
        + " AND NOT s.settled ORDER BY h.id",
        params,
    )
    settled = run(
        conn,
        """
        SELECT h.eval_code AS code, count(*) AS hosts,
               count(*) FILTER (WHERE h.status <> ALL(%(unobserved)s)) AS observed,
               count(*) FILTER (WHERE h.status <> ALL(%(unobserved)s) AND h.eval_silent) AS silent,
               (array_agg(h.id ORDER BY h.id)
                    FILTER (WHERE h.status <> ALL(%(unobserved)s) AND h.eval_silent))[1:%(examples)s]
                   AS silent_ids
        """
        + keyed
        + where
        + " AND s.settled GROUP BY h.eval_code ORDER BY h.eval_code",
        params,
    )

    def read() -> tuple[list[BatchHost], list[SettledCount]]:
        rows = [BatchHost._make(row) for row in changed.fetchall()]
        counts = [
            SettledCount(
                row["code"],
                int(row["hosts"]),
                int(row["observed"]),
                int(row["silent"]),
                row["silent_ids"] or [],
            )
            for row in settled.fetchall()
        ]
        return rows, counts

    return read


def record_evaluations(conn: Conn, evaluated: Sequence[Evaluated]) -> None:
    """Keep the key, time and outcome of each host's evaluation (queued: nothing is fetched)."""
    if not evaluated:
        return
    run(
        conn,
        """
        UPDATE hosts h SET eval_key = v.key, eval_until = v.until, eval_code = v.code,
            eval_silent = v.silent
        FROM jsonb_to_recordset(%(rows)s)
            AS v(host_id text, key text, until timestamptz, code text, silent boolean)
        WHERE h.id = v.host_id
          AND (h.eval_key, h.eval_until, h.eval_code, h.eval_silent)
              IS DISTINCT FROM (v.key, v.until, v.code, v.silent)
        """,
        {
            "rows": Jsonb(
                [
                    {
                        "host_id": e.host_id,
                        "key": e.key,
                        "until": e.until,
                        "code": e.code,
                        "silent": e.silent,
                    }
                    for e in evaluated
                ]
            )
        },
    )


def touch_reports(conn: Conn, reports: Sequence[tuple[Report, str]], received_at: datetime) -> None:
    """Move the time (and counts) of stored reports whose assessed content (digest) is unchanged.

    What staleness needs of a pulled report that changed nothing the policy reads; a stored
    report with another digest (a push came in between) or a newer time is left alone.
    Queued: nothing is fetched.
    """
    if not reports:
        return
    run(
        conn,
        """
        UPDATE reports SET reported_at = v.reported_at, received_at = %(received)s,
            source = v.source, vms_running = v.vms_running, mem_free_mb = v.mem_free_mb
        FROM jsonb_to_recordset(%(rows)s) AS v(
            host_id text, reported_at timestamptz, source text, vms_running integer,
            mem_free_mb integer, digest text)
        WHERE reports.host_id = v.host_id AND reports.digest = v.digest
          AND LEAST(reports.reported_at, reports.received_at) <= v.reported_at
        """,
        {
            "received": received_at,
            "rows": Jsonb(
                [
                    {
                        "host_id": r.host_id,
                        "reported_at": r.reported_at,
                        "source": r.source,
                        "vms_running": r.vms_running,
                        "mem_free_mb": r.mem_free_mb,
                        "digest": digest,
                    }
                    for r, digest in reports
                ]
            ),
        },
    )


def list_hosts(
    conn: Conn,
    *,
    status: str | None = None,
    cluster_id: str | None = None,
    autorecovery: bool | None = None,
    limit: int = 1000,
    after: str = "",
) -> list[HostRow]:
    """Return hosts matching the filters, ordered by id, ``limit`` after ``after``."""
    rows = run(
        conn,
        _HOST_WITH_REPORT
        + """
        WHERE h.id > %(after)s
          AND (%(status)s::text IS NULL OR h.status = %(status)s)
          AND (%(cluster)s::text IS NULL OR h.cluster_id = %(cluster)s)
          AND (%(auto)s::boolean IS NULL OR h.autorecovery = %(auto)s)
        ORDER BY h.id LIMIT %(limit)s
        """,
        {"after": after, "status": status, "cluster": cluster_id, "auto": autorecovery, "limit": limit},
    ).fetchall()
    return _host_rows(rows)


def upsert_reports(conn: Conn, reports: Sequence[Report], received_at: datetime) -> int:
    """Store the latest report of many hosts in one statement; never replace a newer one.

    A stored report counts as of when it was received if it claims a later time: a report dated
    in the future (stored before such reports were refused) must not block every correct one.
    """
    return queue_reports(conn, reports, received_at)()


def queue_reports(conn: Conn, reports: Sequence[Report], received_at: datetime) -> Callable[[], int]:
    """Send ``upsert_reports``' statement; return a function that reads how many were stored.

    In a pipeline nothing waits until that function is called.
    """
    if not reports:
        return lambda: 0
    cur = run(
        conn,
        """
        INSERT INTO reports (host_id, reported_at, received_at, source, agent_reachable, kvm,
                             version, cpu_flags, networks, storage_domains, vms_running,
                             mem_free_mb, error, init, repairable, digest, state_unwritable)
        SELECT r.host_id, r.reported_at, r.received_at, r.source, r.agent_reachable, r.kvm,
               r.version, ARRAY(SELECT jsonb_array_elements_text(r.cpu_flags)), r.networks,
               r.storage_domains, r.vms_running, r.mem_free_mb, r.error, r.init,
               ARRAY(SELECT jsonb_array_elements_text(r.repairable)), r.digest, r.state_unwritable
        FROM jsonb_to_recordset(%(rows)s) AS r(
            host_id text, reported_at timestamptz, received_at timestamptz, source text,
            agent_reachable boolean, kvm boolean, version text, cpu_flags jsonb, networks jsonb,
            storage_domains jsonb, vms_running integer, mem_free_mb integer, error text,
            init jsonb, repairable jsonb, digest text, state_unwritable text)
        JOIN hosts h ON h.id = r.host_id
        ON CONFLICT (host_id) DO UPDATE SET
            reported_at = EXCLUDED.reported_at, received_at = EXCLUDED.received_at,
            source = EXCLUDED.source, agent_reachable = EXCLUDED.agent_reachable,
            kvm = EXCLUDED.kvm, version = EXCLUDED.version, cpu_flags = EXCLUDED.cpu_flags,
            networks = EXCLUDED.networks, storage_domains = EXCLUDED.storage_domains,
            vms_running = EXCLUDED.vms_running, mem_free_mb = EXCLUDED.mem_free_mb,
            error = EXCLUDED.error, init = EXCLUDED.init, repairable = EXCLUDED.repairable,
            digest = EXCLUDED.digest, state_unwritable = EXCLUDED.state_unwritable
        WHERE LEAST(reports.reported_at, reports.received_at) <= EXCLUDED.reported_at
        """,
        {"rows": Jsonb([report_to_json(r, received_at) for r in reports])},
    )
    return lambda: affected(cur)


def queue_transitions(
    conn: Conn, changes: Sequence[Transition], now: datetime, actor: str
) -> Callable[[], list[str]]:
    """Send ``apply_transitions``' statement; return a function that reads the changed ids.

    In a pipeline nothing waits until that function is called.
    """
    if not changes:
        return list
    cur = run(
        conn,
        """
        WITH v AS (
            SELECT * FROM jsonb_to_recordset(%(rows)s)
                AS v(host_id text, expected text, status text, reason text, detail text,
                     subject text)),
        changed AS (
            UPDATE hosts h SET status = v.status, reason = v.reason, detail = v.detail,
                subject = v.subject,
                status_changed_at = CASE WHEN h.status = v.status
                                         THEN h.status_changed_at ELSE %(now)s END
            FROM v WHERE h.id = v.host_id AND h.status = v.expected
            RETURNING h.id, v.expected, v.status, v.reason, v.detail)
        INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
        SELECT %(now)s, 'host', c.id, 'status_changed', %(actor)s, c.reason,
               jsonb_build_object('from', c.expected, 'to', c.status, 'detail', c.detail)
        FROM changed c
        RETURNING object_id
        """,
        {
            "rows": Jsonb(
                [
                    {
                        "host_id": c.host_id,
                        "expected": c.expected.value,
                        "status": c.status.value,
                        "reason": c.reason,
                        "detail": c.detail,
                        "subject": c.subject,
                    }
                    for c in changes
                ]
            ),
            "now": now,
            "actor": actor,
        },
    )
    return lambda: [row["object_id"] for row in cur.fetchall()]


def apply_transitions(conn: Conn, changes: Sequence[Transition], now: datetime, actor: str) -> list[str]:
    """Apply status changes guarded by the expected status, auditing each; return changed ids."""
    return queue_transitions(conn, changes, now, actor)()


def record_decisions(conn: Conn, decisions: Sequence[Decision], now: datetime) -> Callable[[], int]:
    """Store each host's latest decision, writing only those that changed; how many, read later
    (in a pipeline, reading it waits for the statement's result).

    With it goes whether the decision means a clean report (``Decision.is_clean``), from which a
    trigger keeps when the host's fault cleared (migration 0016).
    """
    if not decisions:
        return lambda: 0
    cur = run(
        conn,
        """
        UPDATE hosts h SET last_decision = v.code, last_decision_detail = v.detail,
            last_decision_clean = v.clean, last_decision_at = %(now)s
        FROM jsonb_to_recordset(%(rows)s) AS v(host_id text, code text, detail text, clean boolean)
        WHERE h.id = v.host_id AND (h.last_decision IS DISTINCT FROM v.code
                                    OR h.last_decision_detail IS DISTINCT FROM v.detail)
        """,
        {
            "rows": Jsonb(
                [
                    {"host_id": d.host_id, "code": d.code, "detail": d.detail, "clean": d.is_clean}
                    for d in decisions
                ]
            ),
            "now": now,
        },
    )
    return lambda: affected(cur)


def set_autorecovery(conn: Conn, host_id: str, enabled: bool) -> bool | None:
    """Set a host's autorecovery flag; return the previous value, or None for an unknown host.

    The row is locked before it is read: an ``UPDATE … FROM hosts old`` would read the value
    of its snapshot, before a concurrent writer's, and audit a previous value that never was.
    """
    row = run(conn, "SELECT autorecovery FROM hosts WHERE id = %(id)s FOR UPDATE", {"id": host_id}).fetchone()
    if row is None:
        return None
    run(conn, "UPDATE hosts SET autorecovery = %(on)s WHERE id = %(id)s", {"id": host_id, "on": enabled})
    return bool(row["autorecovery"])


def set_status(
    conn: Conn,
    host_id: str,
    status: str,
    reason: str | None,
    detail: str | None,
    now: datetime,
    *,
    fence: int | None = None,
) -> bool:
    """Set a host's status; with ``fence``, only while the host's fence is still that token.

    The subject (the domain or network a monitoring reason is about) is cleared: only monitoring
    transitions set one.
    """
    cur = run(
        conn,
        """
        UPDATE hosts SET status = %(status)s, reason = %(reason)s, detail = %(detail)s,
            subject = NULL,
            status_changed_at = CASE WHEN status = %(status)s THEN status_changed_at
                                     ELSE %(now)s END
        WHERE id = %(id)s AND (%(fence)s::bigint IS NULL OR fence = %(fence)s)
        """,
        {"id": host_id, "status": status, "reason": reason, "detail": detail, "now": now, "fence": fence},
    )
    return affected(cur) == 1


def set_agent_url(conn: Conn, host_id: str, agent_url: str) -> str | None:
    """Point a host at another agent URL; return the previous URL, or None for an unknown host.

    Locks the row before reading it, like ``set_autorecovery``.
    """
    row = run(conn, "SELECT agent_url FROM hosts WHERE id = %(id)s FOR UPDATE", {"id": host_id}).fetchone()
    if row is None:
        return None
    run(conn, "UPDATE hosts SET agent_url = %(url)s WHERE id = %(id)s", {"id": host_id, "url": agent_url})
    return str(row["agent_url"])


def delete_host(conn: Conn, host_id: str) -> bool:
    """Delete a host with no activation in flight; return True when deleted."""
    cur = run(
        conn,
        """
        DELETE FROM hosts WHERE id = %(id)s AND NOT EXISTS (
            SELECT 1 FROM activations a WHERE a.host_id = %(id)s
                AND a.state IN ('queued', 'sending', 'sent'))
        """,
        {"id": host_id},
    )
    return affected(cur) == 1


def count_by_status(conn: Conn) -> dict[str, int]:
    """Return the number of hosts in each status."""
    rows = run(conn, "SELECT status, count(*) AS n FROM hosts GROUP BY status").fetchall()
    return {row["status"]: int(row["n"]) for row in rows}


#: The hosts repository: this module's functions and those of ``clusters`` and ``fences``.
__all__ = [
    "FencePush",
    "HostRow",
    "all_clusters",
    "apply_transitions",
    "batch_after",
    "batch_between",
    "batch_changed",
    "batch_rows",
    "clear_agent_hold",
    "clear_fence_pending",
    "fence_push_failed",
    "count_by_status",
    "delete_cluster",
    "delete_host",
    "existing_ids",
    "get_cluster",
    "get_host",
    "hold_agent",
    "hold_init",
    "insert_host",
    "issued_fence",
    "list_hosts",
    "pending_fences",
    "queue_reports",
    "queue_transitions",
    "raise_fence",
    "record_decisions",
    "record_evaluations",
    "set_agent_state",
    "set_agent_url",
    "set_autorecovery",
    "set_status",
    "upsert_cluster",
    "touch_reports",
    "upsert_reports",
]
