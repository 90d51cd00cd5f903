"""The audit log: every state change with its actor and reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from autorecovery.adapters.store.db import Conn, run


def add(
    conn: Conn,
    *,
    at: datetime,
    object_type: str,
    object_id: str,
    event: str,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one audit entry in the caller's transaction."""
    run(
        conn,
        """
        INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
        VALUES (%(at)s, %(type)s, %(id)s, %(event)s, %(actor)s, %(reason)s, %(details)s)
        """,
        {
            "at": at,
            "type": object_type,
            "id": object_id,
            "event": event,
            "actor": actor,
            "reason": reason,
            "details": Jsonb(details or {}),
        },
    )


def query(
    conn: Conn,
    *,
    object_type: str | None = None,
    object_id: str | None = None,
    actor: str | None = None,
    event: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Return audit entries matching the filters, newest first, ``limit`` below ``before_id``."""
    return run(
        conn,
        """
        SELECT id, at, object_type, object_id, event, actor, reason, details FROM audit_log
        WHERE (%(type)s::text IS NULL OR object_type = %(type)s)
          AND (%(oid)s::text IS NULL OR object_id = %(oid)s)
          AND (%(actor)s::text IS NULL OR actor = %(actor)s)
          AND (%(event)s::text IS NULL OR event = %(event)s)
          AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
          AND (%(before)s::bigint IS NULL OR id < %(before)s)
        ORDER BY id DESC LIMIT %(limit)s
        """,
        {
            "type": object_type,
            "oid": object_id,
            "actor": actor,
            "event": event,
            "since": since,
            "before": before_id,
            "limit": limit,
        },
    ).fetchall()
