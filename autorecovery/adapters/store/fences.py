"""Fences of hosts: raising them, and telling agents (part of the hosts repository, re-exported).

A fence taken from its holder (reaped, given up) is marked for the agent; the tick pushes it with
``POST /fence`` and clears the mark. A host whose init outcome was not seen is held.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.types.json import Jsonb

from autorecovery.adapters.store.db import Conn, run
from autorecovery.ports.rows import FencePush


def raise_fence(conn: Conn, host_id: str, fence: int, at_least: int) -> bool:
    """Move a host's fence counter up to ``at_least`` while it is still ``fence``.

    The agent must learn the new fence too (a paused holder would otherwise still reach it):
    the host is marked for the tick's push (``pending_fences``) in the same statement.
    """
    cur = run(
        conn,
        """
        UPDATE hosts SET fence = GREATEST(fence, %(to)s), agent_fence_pending = true
        WHERE id = %(id)s AND fence = %(fence)s
        """,
        {"id": host_id, "fence": fence, "to": at_least},
    )
    return cur.rowcount == 1


def pending_fences(conn: Conn, limit: int) -> list[FencePush]:
    """Return up to ``limit`` hosts whose agent has not learnt their fence yet, by id."""
    rows = run(
        conn,
        """
        SELECT id, agent_url, fence FROM hosts WHERE agent_fence_pending
        ORDER BY id LIMIT %(limit)s
        """,
        {"limit": limit},
    ).fetchall()
    return [FencePush(r["id"], r["agent_url"], int(r["fence"])) for r in rows]


def clear_fence_pending(conn: Conn, pushed: Sequence[FencePush]) -> int:
    """Clear the mark of hosts whose agent learnt the fence, unless it moved on since."""
    if not pushed:
        return 0
    cur = run(
        conn,
        """
        UPDATE hosts h SET agent_fence_pending = false
        FROM jsonb_to_recordset(%(rows)s) AS v(host_id text, fence bigint)
        WHERE h.id = v.host_id AND h.fence = v.fence AND h.agent_fence_pending
        """,
        {"rows": Jsonb([{"host_id": p.host_id, "fence": p.fence} for p in pushed])},
    )
    return cur.rowcount
def hold_init(conn: Conn, host_id: str, until: datetime) -> bool:
    """Give a host no new init before ``until`` (an init's outcome was not seen); never shortens."""
    cur = run(
        conn,
        """
        UPDATE hosts SET init_hold_until = GREATEST(init_hold_until, %(until)s) WHERE id = %(id)s
        """,
        {"id": host_id, "until": until},
    )
    return cur.rowcount == 1
