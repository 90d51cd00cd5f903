"""Storage domains: rows, status from monitoring, and their own fenced activations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from autorecovery.adapters.store.db import Conn, affected, run
from autorecovery.ports import DomainActivationRow
from models.domain import DomainStatus, StorageDomain


def _domain(row: dict[str, Any]) -> StorageDomain:
    return StorageDomain(
        id=row["id"],
        status=DomainStatus(row["status"]),
        autorecovery=row["autorecovery"],
        fence=row["fence"],
        last_seen_at=row["last_seen_at"],
        status_changed_at=row["status_changed_at"],
        detail=row["detail"],
    )


def ensure(conn: Conn, sd_ids: Iterable[str], now: datetime) -> list[str]:
    """Register storage domains named by a cluster (active, autorecovery on); return new ones."""
    ids = sorted(set(sd_ids))
    if not ids:
        return []
    rows = run(
        conn,
        """
        INSERT INTO storage_domains (id, last_seen_at, status_changed_at)
        SELECT unnest(%(ids)s::text[]), %(now)s, %(now)s
        ON CONFLICT (id) DO NOTHING RETURNING id
        """,
        {"ids": ids, "now": now},
    ).fetchall()
    return [r["id"] for r in rows]


def get(conn: Conn, sd_id: str) -> StorageDomain | None:
    """Return one storage domain, or None."""
    row = run(conn, "SELECT * FROM storage_domains WHERE id = %(id)s", {"id": sd_id}).fetchone()
    return _domain(row) if row else None


def all_domains(conn: Conn) -> dict[str, StorageDomain]:
    """Return every storage domain by id."""
    rows = run(conn, "SELECT * FROM storage_domains ORDER BY id").fetchall()
    return {r["id"]: _domain(r) for r in rows}


def clusters_of(conn: Conn, sd_id: str) -> list[str]:
    """Return the clusters a storage domain is attached to."""
    rows = run(
        conn, "SELECT id FROM clusters WHERE %(id)s = ANY(storage_domains) ORDER BY id", {"id": sd_id}
    ).fetchall()
    return [r["id"] for r in rows]


def set_autorecovery(conn: Conn, sd_id: str, enabled: bool) -> bool:
    """Set a storage domain's autorecovery flag; False for an unknown domain."""
    cur = run(
        conn,
        "UPDATE storage_domains SET autorecovery = %(on)s WHERE id = %(id)s",
        {"id": sd_id, "on": enabled},
    )
    return affected(cur) == 1


def set_status(
    conn: Conn,
    sd_id: str,
    status: str,
    detail: str | None,
    now: datetime,
    *,
    fence: int | None = None,
) -> bool:
    """Set a domain's status; with ``fence``, only while its fence is still that token."""
    cur = run(
        conn,
        """
        UPDATE storage_domains SET status = %(status)s, detail = %(detail)s,
            status_changed_at = CASE WHEN status = %(status)s THEN status_changed_at ELSE %(now)s END,
            last_seen_at = CASE WHEN %(status)s = 'active' THEN %(now)s ELSE last_seen_at END
        WHERE id = %(id)s AND (%(fence)s::bigint IS NULL OR fence = %(fence)s)
        """,
        {"id": sd_id, "status": status, "detail": detail, "now": now, "fence": fence},
    )
    return affected(cur) == 1


def follow_monitoring(
    conn: Conn, *, now: datetime, fresh_after: datetime, inactive_before: datetime
) -> list[dict[str, Any]]:
    """Update every domain from the latest reports in one statement, auditing each change.

    A domain an up host reached with a fresh report is seen now (and ``active`` again if it was
    ``inactive`` and its autorecovery is on: an up host already has it connected); an ``active``
    domain no up host has reached since ``inactive_before`` goes ``inactive``. ``maintenance``
    is never left here, and a domain with autorecovery off stays inactive until an admin acts.

    Returns:
        The changes, each with ``id``, ``from`` and ``to``.
    """
    return run(
        conn,
        """
        WITH seen AS (
            SELECT DISTINCT e.key AS sd_id
            FROM reports r JOIN hosts h ON h.id = r.host_id,
                 jsonb_each(r.storage_domains) AS e
            WHERE h.status = 'up' AND r.agent_reachable AND r.reported_at >= %(fresh)s
              AND e.value = 'true'::jsonb),
        cur AS (
            SELECT d.id, d.status AS old_status, (s.sd_id IS NOT NULL) AS is_seen,
                   CASE WHEN d.status = 'inactive' AND s.sd_id IS NOT NULL AND d.autorecovery
                        THEN 'active'
                        WHEN d.status = 'active' AND s.sd_id IS NULL
                             AND (d.last_seen_at IS NULL OR d.last_seen_at < %(inactive_before)s)
                        THEN 'inactive'
                        ELSE d.status END AS new_status,
                   d.last_seen_at
            FROM storage_domains d LEFT JOIN seen s ON s.sd_id = d.id),
        upd AS (
            UPDATE storage_domains d SET
                last_seen_at = CASE WHEN cur.is_seen THEN %(now)s ELSE d.last_seen_at END,
                status = cur.new_status,
                status_changed_at = CASE WHEN cur.new_status <> cur.old_status THEN %(now)s
                                         ELSE d.status_changed_at END,
                detail = CASE WHEN cur.new_status = cur.old_status THEN d.detail
                              WHEN cur.new_status = 'active' THEN 'reached by an up host again'
                              ELSE 'no up host reached it since '
                                   || coalesce(cur.last_seen_at::text, 'registration') END
            FROM cur WHERE d.id = cur.id AND (cur.is_seen OR cur.new_status <> cur.old_status)
              -- Re-checked on the row as committed meanwhile: a status an admin set while this
              -- statement waited for the row (maintenance) is left alone, not overwritten.
              AND d.status = cur.old_status
            RETURNING d.id, cur.old_status, cur.new_status, d.detail),
        aud AS (
            INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
            SELECT %(now)s, 'storage_domain', id, 'status_changed', 'auto', detail,
                   jsonb_build_object('from', old_status, 'to', new_status)
            FROM upd WHERE old_status <> new_status)
        SELECT id, old_status AS from_status, new_status AS to_status FROM upd
        WHERE old_status <> new_status
        """,
        {"now": now, "fresh": fresh_after, "inactive_before": inactive_before},
    ).fetchall()


def reachable_inactive(conn: Conn, fresh_after: datetime) -> list[str]:
    """Inactive domains with autorecovery on that some host's fresh report reaches again.

    A report that marks the domain ``repairable`` (its pool is stopped, its target there) counts:
    the connect through that host repairs it.
    """
    rows = run(
        conn,
        """
        SELECT DISTINCT d.id FROM storage_domains d
        JOIN reports r ON (r.storage_domains -> d.id = 'true'::jsonb
                           OR 'storage_domain:' || d.id = ANY(r.repairable))
        WHERE d.status = 'inactive' AND d.autorecovery AND r.agent_reachable
          AND r.reported_at >= %(fresh)s
          AND NOT EXISTS (SELECT 1 FROM sd_activations a WHERE a.sd_id = d.id
                          AND a.state IN ('queued', 'sending', 'sent'))
        ORDER BY d.id
        """,
        {"fresh": fresh_after},
    ).fetchall()
    return [r["id"] for r in rows]


def connect_targets(conn: Conn, sd_id: str, fresh_after: datetime) -> list[dict[str, Any]]:
    """Hosts of the domain's clusters whose fresh report reaches it (or can repair it): up hosts first."""
    return run(
        conn,
        """
        SELECT h.id, h.agent_url, h.status FROM hosts h
        JOIN clusters c ON c.id = h.cluster_id AND %(sd)s = ANY(c.storage_domains)
        JOIN reports r ON r.host_id = h.id
        WHERE r.agent_reachable AND r.reported_at >= %(fresh)s
          AND (r.storage_domains -> %(sd)s = 'true'::jsonb
               OR 'storage_domain:' || %(sd)s = ANY(r.repairable))
          AND h.status <> 'maintenance'
        ORDER BY (h.status = 'up') DESC, r.storage_domains -> %(sd)s = 'true'::jsonb DESC, h.id
        """,
        {"sd": sd_id, "fresh": fresh_after},
    ).fetchall()


#: A domain activation's columns, and whether its deadline has passed on PostgreSQL's clock.
SD_SELECT = "SELECT *, coalesce(deadline_at <= now(), false) AS past_deadline FROM sd_activations"


def queue_activation(
    conn: Conn, activation_id: str, sd_id: str, *, trigger: str, actor: str, now: datetime
) -> bool:
    """Queue a domain activation unless one is in flight; audited. True when queued.

    The lease (``queued_at``) is PostgreSQL's clock; ``now`` stamps the audit.
    """
    row = run(
        conn,
        """
        WITH ins AS (
            INSERT INTO sd_activations (id, sd_id, trigger, actor, state, queued_at)
            VALUES (%(id)s, %(sd)s, %(trigger)s, %(actor)s, 'queued', now())
            ON CONFLICT DO NOTHING RETURNING id, sd_id),
        aud AS (
            INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
            SELECT %(now)s, 'storage_domain', sd_id, 'activation_queued', %(actor)s, %(trigger)s,
                   jsonb_build_object('activation_id', id) FROM ins)
        SELECT id FROM ins
        """,
        {"id": activation_id, "sd": sd_id, "trigger": trigger, "actor": actor, "now": now},
    ).fetchone()
    return row is not None


def in_flight(conn: Conn, sd_id: str) -> DomainActivationRow | None:
    """Return the domain's queued or running activation, or None."""
    row = run(
        conn,
        SD_SELECT + " WHERE sd_id = %(sd)s AND state IN ('queued', 'sending', 'sent')",
        {"sd": sd_id},
    ).fetchone()
    return cast("DomainActivationRow | None", row)


def get_activation(conn: Conn, activation_id: str) -> DomainActivationRow | None:
    """Return one domain activation, or None."""
    row = run(conn, SD_SELECT + " WHERE id = %(id)s", {"id": activation_id}).fetchone()
    return cast("DomainActivationRow | None", row)


def begin_activation(conn: Conn, activation_id: str, now: datetime | None = None) -> int | None:
    """Mark the activation ``sending`` and issue its fence (the domain's, bumped).

    ``started_at`` (the lease the reaper checks) is PostgreSQL's clock; ``now`` is not used.
    """
    row = run(
        conn,
        """
        WITH a AS (SELECT id, sd_id FROM sd_activations
                   WHERE id = %(id)s AND state IN ('queued', 'sending') FOR UPDATE),
        f AS (UPDATE storage_domains d SET fence = d.fence + 1 FROM a WHERE d.id = a.sd_id
              AND d.fence < 9223372036854775807  -- bigint: no fence past it is ever issued
              RETURNING d.fence)
        UPDATE sd_activations SET state = 'sending', fence = f.fence, started_at = now()
        FROM f, a WHERE sd_activations.id = a.id RETURNING sd_activations.fence
        """,
        {"id": activation_id},
    ).fetchone()
    return None if row is None else int(row["fence"])


def mark_activation_sent(
    conn: Conn, activation_id: str, *, fence: int, answer: str, target: str, hold_s: float
) -> bool:
    """Record a connect sent through host ``target`` whose outcome is not known (``answer``);
    the record holds the domain until ``hold_s`` from now (PostgreSQL's clock)."""
    cur = run(
        conn,
        """
        UPDATE sd_activations SET state = 'sent', answer = %(answer)s, target = %(target)s,
            deadline_at = now() + make_interval(secs => %(hold)s)
        WHERE id = %(id)s AND state = 'sending' AND fence = %(fence)s
        """,
        {"id": activation_id, "fence": fence, "answer": answer, "target": target, "hold": hold_s},
    )
    return affected(cur) == 1


def abandon_for_maintenance(conn: Conn, sd_id: str, now: datetime) -> str | None:
    """Abandon the domain's activation in flight and bump its fence, so that its holder writes
    nothing (an admin puts the domain in maintenance); return the activation's id, if any."""
    row = run(
        conn,
        """
        WITH f AS (UPDATE storage_domains SET fence = fence + 1 WHERE id = %(sd)s RETURNING id)
        UPDATE sd_activations a SET state = 'abandoned', outcome = 'maintenance', ended_at = %(now)s,
            detail = 'an admin put the domain in maintenance'
        FROM f WHERE a.sd_id = f.id AND a.state IN ('queued', 'sending', 'sent')
        RETURNING a.id
        """,
        {"sd": sd_id, "now": now},
    ).fetchone()
    return None if row is None else str(row["id"])


def finish_activation(
    conn: Conn,
    activation_id: str,
    *,
    state: str,
    outcome: str,
    detail: str,
    now: datetime,
    fence: int | None,
) -> bool:
    """Close an in-flight domain activation; with ``fence``, only while it holds that token."""
    cur = run(
        conn,
        """
        UPDATE sd_activations SET state = %(state)s, outcome = %(outcome)s, detail = %(detail)s,
            ended_at = %(now)s
        WHERE id = %(id)s AND state IN ('queued', 'sending', 'sent')
          AND (fence = %(fence)s OR (%(fence)s::bigint IS NULL AND state = 'queued'
                                     AND fence IS NULL))
        """,
        {
            "id": activation_id,
            "state": state,
            "outcome": outcome,
            "detail": detail,
            "now": now,
            "fence": fence,
        },
    )
    return affected(cur) == 1


def raise_fence(conn: Conn, sd_id: str, fence: int, at_least: int) -> bool:
    """Move a domain's fence counter up to ``at_least`` while it is still ``fence``."""
    cur = run(
        conn,
        "UPDATE storage_domains SET fence = GREATEST(fence, %(to)s) WHERE id = %(id)s AND fence = %(fence)s",
        {"id": sd_id, "fence": fence, "to": at_least},
    )
    return affected(cur) == 1


def reap_activations(conn: Conn, *, now: datetime, queued_ttl_s: float, running_ttl_s: float) -> int:
    """Abandon domain activations with no result in time, bumping the domain's fence.

    Leases are compared on PostgreSQL's clock (see ``activations.reap``).
    """
    rows = run(
        conn,
        """
        WITH stale AS (
            SELECT id, sd_id FROM sd_activations
            WHERE (state = 'queued' AND queued_at < now() - make_interval(secs => %(queued_ttl)s))
               OR (state = 'sending' AND started_at < now() - make_interval(secs => %(running_ttl)s))
               OR (state = 'sent' AND deadline_at < now() - make_interval(secs => %(running_ttl)s))
            FOR UPDATE SKIP LOCKED),
        ab AS (UPDATE sd_activations a SET state = 'abandoned', outcome = 'abandoned',
                   ended_at = %(now)s
               FROM stale WHERE a.id = stale.id RETURNING a.sd_id),
        f AS (UPDATE storage_domains d SET fence = LEAST(d.fence, 9223372036854775806) + 1
              FROM ab WHERE d.id = ab.sd_id
              RETURNING d.id)
        SELECT count(*) AS n FROM f
        """,
        {"now": now, "queued_ttl": queued_ttl_s, "running_ttl": running_ttl_s},
    ).fetchone()
    return int(rows["n"]) if rows else 0
