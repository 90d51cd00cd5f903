"""Pauses, the observer's state, admission counts, backoff and quarantine, incidents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from autorecovery.adapters.store.db import Conn, affected, run
from models.safety import Pause


def _pause(row: dict[str, Any]) -> Pause:
    return Pause(row["scope"], row["reason"], row["owner"], row["created_at"], row["expires_at"])


def active_pauses(conn: Conn, now: datetime) -> dict[str, Pause]:
    """Drop pauses that expired (auditing each as ended by itself) and return the rest by scope."""
    run(
        conn,
        """
        WITH gone AS (DELETE FROM pauses WHERE expires_at IS NOT NULL AND expires_at <= %(now)s
                      RETURNING scope, reason, owner, expires_at)
        INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
        SELECT %(now)s, 'pause', scope, 'pause_expired', 'auto', reason,
               jsonb_build_object('owner', owner, 'expires_at', expires_at)
        FROM gone
        """,
        {"now": now},
    )
    rows = run(conn, "SELECT * FROM pauses ORDER BY scope").fetchall()
    return {row["scope"]: _pause(row) for row in rows}


def list_pauses(conn: Conn) -> dict[str, Pause]:
    """Return every stored pause by scope, expired or not (the tick drops expired ones)."""
    rows = run(conn, "SELECT * FROM pauses ORDER BY scope").fetchall()
    return {row["scope"]: _pause(row) for row in rows}


def set_pause(conn: Conn, pause: Pause) -> None:
    """Create or replace the pause of a scope."""
    run(
        conn,
        """
        INSERT INTO pauses (scope, reason, owner, created_at, expires_at)
        VALUES (%(scope)s, %(reason)s, %(owner)s, %(created)s, %(expires)s)
        ON CONFLICT (scope) DO UPDATE SET reason = EXCLUDED.reason, owner = EXCLUDED.owner,
            created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at
        """,
        {
            "scope": pause.scope,
            "reason": pause.reason,
            "owner": pause.owner,
            "created": pause.created_at,
            "expires": pause.expires_at,
        },
    )


def lift_pause(conn: Conn, scope: str) -> Pause | None:
    """Delete a scope's pause; return it, or None when there was none."""
    row = run(conn, "DELETE FROM pauses WHERE scope = %(scope)s RETURNING *", {"scope": scope}).fetchone()
    return _pause(row) if row else None


def observer_state(conn: Conn) -> dict[str, Any]:
    """Return what the last tick saw: last full tick, gate, silent and observed hosts."""
    row = run(conn, "SELECT * FROM observer WHERE id = 1").fetchone()
    return dict(row) if row else {}


def record_observer(conn: Conn, *, now: datetime, gate: str | None, silent: int, observed: int) -> None:
    """Record a full tick: its time, its gate (None when activations were allowed), its counts."""
    run(
        conn,
        """
        UPDATE observer SET last_full_tick_at = %(now)s, gate = %(gate)s,
            silent_hosts = %(silent)s, observed_hosts = %(observed)s, updated_at = %(now)s
        WHERE id = 1
        """,
        {"now": now, "gate": gate, "silent": silent, "observed": observed},
    )


def lock_admission(conn: Conn) -> None:
    """Serialise admissions (ticks, duplicates) until the transaction ends, so caps hold."""
    run(conn, "SELECT pg_advisory_xact_lock(hashtext('autorecovery.admission'))")


def in_flight_by_cluster(conn: Conn) -> dict[str, int]:
    """Return queued or running activations per cluster."""
    rows = run(
        conn,
        """
        SELECT h.cluster_id, count(*) AS n FROM activations a JOIN hosts h ON h.id = a.host_id
        WHERE a.state IN ('queued', 'sending', 'sent') GROUP BY h.cluster_id
        """,
    ).fetchall()
    return {row["cluster_id"]: int(row["n"]) for row in rows}


def queued_activations(conn: Conn) -> int:
    """Return the host activations queued and not started yet (their messages wait in the broker)."""
    row = run(conn, "SELECT count(*) AS n FROM activations WHERE state = 'queued'").fetchone()
    return int(row["n"]) if row else 0


def cluster_sizes(conn: Conn) -> dict[str, int]:
    """Return the number of hosts per cluster."""
    rows = run(conn, "SELECT cluster_id, count(*) AS n FROM hosts GROUP BY cluster_id").fetchall()
    return {row["cluster_id"]: int(row["n"]) for row in rows}


def up_by_cluster(conn: Conn) -> dict[str, int]:
    """Return the number of up hosts per cluster (clusters with none are left out)."""
    rows = run(
        conn, "SELECT cluster_id, count(*) AS n FROM hosts WHERE status = 'up' GROUP BY cluster_id"
    ).fetchall()
    return {row["cluster_id"]: int(row["n"]) for row in rows}


def record_failure(conn: Conn, host_id: str, fence: int, next_attempt_at: datetime) -> int | None:
    """Count a failed automatic activation and set when to try next; return the failures."""
    row = run(
        conn,
        """
        UPDATE hosts SET failures = failures + 1, next_attempt_at = %(next)s
        WHERE id = %(id)s AND fence = %(fence)s RETURNING failures
        """,
        {"id": host_id, "fence": fence, "next": next_attempt_at},
    ).fetchone()
    return None if row is None else int(row["failures"])


def postpone(conn: Conn, host_id: str, fence: int, next_attempt_at: datetime) -> bool:
    """Set when to try a host next (never sooner than set) without counting a failure."""
    cur = run(
        conn,
        """
        UPDATE hosts SET next_attempt_at = GREATEST(next_attempt_at, %(next)s)
        WHERE id = %(id)s AND fence = %(fence)s
        """,
        {"id": host_id, "fence": fence, "next": next_attempt_at},
    )
    return affected(cur) == 1


def failures_of(conn: Conn, host_id: str) -> int:
    """Return a host's failed automatic activations in a row."""
    row = run(conn, "SELECT failures FROM hosts WHERE id = %(id)s", {"id": host_id}).fetchone()
    return int(row["failures"]) if row else 0


def clear_holds(
    conn: Conn, host_id: str, *, quarantine: bool, now: datetime | None = None
) -> dict[str, Any] | None:
    """Reset a host's backoff (and with ``quarantine``, its quarantine); return what it was.

    Clearing the quarantine also restarts the flap count at ``now``. The row is locked before it
    is read, so that what is returned (and audited) is what this reset cleared.
    """
    was = run(
        conn,
        """
        SELECT failures, next_attempt_at, quarantined_at, quarantine_reason FROM hosts
        WHERE id = %(id)s FOR UPDATE
        """,
        {"id": host_id},
    ).fetchone()
    if was is None:
        return None
    run(
        conn,
        """
        UPDATE hosts SET failures = 0, next_attempt_at = NULL,
            quarantined_at = CASE WHEN %(q)s THEN NULL ELSE quarantined_at END,
            quarantine_reason = CASE WHEN %(q)s THEN NULL ELSE quarantine_reason END,
            holds_cleared_at = CASE WHEN %(q)s THEN COALESCE(%(now)s, now()) ELSE holds_cleared_at END
        WHERE id = %(id)s
        """,
        {"id": host_id, "q": quarantine, "now": now},
    )
    return was


def auto_ends_since(conn: Conn, host_id: str, since: datetime) -> int:
    """Count a host's automatic activations that ended up or failed since ``since``, and since
    its holds were last cleared.

    The host's first success ever (the one that brought it up after registration) is no
    recovery and is not counted; nor is an activation whose message the broker refused
    (``not_enqueued``): it never reached the host, and a broker outage is nobody's flapping.
    """
    row = run(
        conn,
        """
        SELECT count(*) AS n FROM activations a JOIN hosts h ON h.id = a.host_id
        WHERE a.host_id = %(id)s AND a.trigger = 'auto' AND a.state IN ('done', 'failed')
          AND a.outcome IS DISTINCT FROM 'not_enqueued'
          AND a.ended_at >= %(since)s
          AND (h.holds_cleared_at IS NULL OR a.ended_at > h.holds_cleared_at)
          AND a.id IS DISTINCT FROM (
              SELECT f.id FROM activations f WHERE f.host_id = a.host_id AND f.state = 'done'
              ORDER BY f.queued_at, f.id LIMIT 1)
        """,
        {"id": host_id, "since": since},
    ).fetchone()
    return int(row["n"]) if row else 0


def quarantine(conn: Conn, host_id: str, now: datetime, reason: str) -> bool:
    """Put a host in quarantine unless it already is; return True when it was put there now."""
    cur = run(
        conn,
        """
        UPDATE hosts SET quarantined_at = %(now)s, quarantine_reason = %(reason)s
        WHERE id = %(id)s AND quarantined_at IS NULL
        """,
        {"id": host_id, "now": now, "reason": reason},
    )
    return affected(cur) == 1


def track_incidents(conn: Conn, *, now: datetime, since: datetime, min_hosts: int) -> list[dict[str, Any]]:
    """Open an incident where ``min_hosts`` of a cluster went out for one storage domain or
    network since ``since``; close those whose subject no host is out for any more.

    Returns:
        The incidents opened or closed now, with ``event`` 'incident_opened' or 'incident_closed'.
    """
    return run(
        conn,
        """
        WITH out_now AS (
            SELECT cluster_id, reason, subject, count(*) AS n,
                   count(*) FILTER (WHERE status_changed_at >= %(since)s) AS recent
            FROM hosts WHERE status = 'non_operational' AND subject IS NOT NULL
            GROUP BY cluster_id, reason, subject),
        opened AS (
            INSERT INTO incidents (cluster_id, reason, subject, hosts, opened_at)
            SELECT cluster_id, reason, subject, n, %(now)s FROM out_now
            WHERE recent >= %(min)s
            ON CONFLICT (cluster_id, subject) WHERE closed_at IS NULL DO NOTHING
            RETURNING id, cluster_id, reason, subject, hosts),
        closed AS (
            UPDATE incidents i SET closed_at = %(now)s
            WHERE i.closed_at IS NULL AND NOT EXISTS (
                SELECT 1 FROM out_now o WHERE o.cluster_id = i.cluster_id AND o.subject = i.subject)
            RETURNING id, cluster_id, reason, subject, hosts),
        changes AS (
            SELECT 'incident_opened' AS event, * FROM opened
            UNION ALL SELECT 'incident_closed', * FROM closed),
        aud AS (
            INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
            SELECT %(now)s, 'cluster', cluster_id, event, 'auto', reason,
                   jsonb_build_object('incident', id, 'subject', subject, 'hosts', hosts)
            FROM changes)
        SELECT * FROM changes
        """,
        {"now": now, "since": since, "min": min_hosts},
    ).fetchall()


def open_incidents(conn: Conn) -> list[dict[str, Any]]:
    """Return the incidents still open."""
    return run(conn, "SELECT * FROM incidents WHERE closed_at IS NULL ORDER BY opened_at").fetchall()


def held_hosts(conn: Conn, now: datetime, examples: int) -> list[dict[str, Any]]:
    """Count hosts by hold and status, whatever the status (``models.safety.host_holds``).

    Returns:
        one row per (``hold``, ``status``) with ``n`` hosts and the first ``examples`` ids.
    """
    rows = run(
        conn,
        """
        SELECT hold, status, count(*) AS n, (array_agg(id ORDER BY id))[1:%(examples)s] AS examples
        FROM (
            SELECT id, status, 'maintenance' AS hold FROM hosts WHERE status = 'maintenance'
            UNION ALL SELECT id, status, 'autorecovery_off' FROM hosts WHERE NOT autorecovery
            UNION ALL SELECT id, status, 'quarantine' FROM hosts WHERE quarantined_at IS NOT NULL
            UNION ALL SELECT id, status, 'error_period' FROM hosts
                WHERE status = 'error' AND (error_until IS NULL OR error_until > %(now)s)
            UNION ALL SELECT id, status, 'backoff' FROM hosts WHERE next_attempt_at > %(now)s
            UNION ALL SELECT id, status, 'init_outcome_unknown' FROM hosts WHERE init_hold_until > %(now)s
            UNION ALL SELECT id, status, 'agent_fence_ahead' FROM hosts WHERE agent_hold IS NOT NULL
            UNION ALL SELECT h.id, h.status, 'agent_state_unwritable' FROM hosts h
                JOIN reports r ON r.host_id = h.id WHERE r.state_unwritable IS NOT NULL
        ) AS held
        GROUP BY hold, status ORDER BY hold, status
        """,
        {"now": now, "examples": examples},
    ).fetchall()
    return [{**r, "n": int(r["n"]), "examples": list(r["examples"])} for r in rows]
