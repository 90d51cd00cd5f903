"""Fences of hosts: raising them, and telling agents (part of the hosts repository, re-exported).

A fence taken from its holder (reaped, given up) is marked for the agent; the housekeeping pushes it
with ``POST /fence`` and clears the mark, or backs off from an agent that does not answer. A host
whose init outcome was not seen is held.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from psycopg.types.json import Jsonb

from autorecovery.adapters.store.db import Conn, affected, run
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
    return affected(cur) == 1


def pending_fences(conn: Conn, limit: int) -> list[FencePush]:
    """Return up to ``limit`` hosts whose agent has not learnt their fence yet and is due.

    Never asked first, then the longest due: a round-robin in which an agent that failed waits
    its backoff (``fence_push_failed``) while the others get their turn.
    """
    rows = run(
        conn,
        """
        SELECT id, agent_url, fence FROM hosts
        WHERE agent_fence_pending AND (fence_push_after IS NULL OR fence_push_after <= clock_timestamp())
        ORDER BY fence_push_after NULLS FIRST, id LIMIT %(limit)s
        """,
        {"limit": limit},
    ).fetchall()
    return [FencePush(r["id"], r["agent_url"], int(r["fence"])) for r in rows]


def clear_fence_pending(conn: Conn, pushed: Sequence[FencePush]) -> int:
    """Clear the mark (and the backoff) of hosts whose agent learnt the fence, unless it moved on."""
    if not pushed:
        return 0
    cur = run(
        conn,
        """
        UPDATE hosts h SET agent_fence_pending = false, fence_push_failures = 0, fence_push_after = NULL
        FROM jsonb_to_recordset(%(rows)s) AS v(host_id text, fence bigint)
        WHERE h.id = v.host_id AND h.fence = v.fence AND h.agent_fence_pending
        """,
        {"rows": Jsonb([{"host_id": p.host_id, "fence": p.fence} for p in pushed])},
    )
    return affected(cur)


def fence_push_failed(conn: Conn, failed: Sequence[str], backoff_s: float, backoff_max_s: float) -> int:
    """Ask these hosts' agents again after a backoff doubling with each failure, up to a maximum."""
    if not failed:
        return 0
    cur = run(
        conn,
        """
        UPDATE hosts SET fence_push_failures = fence_push_failures + 1,
            fence_push_after = clock_timestamp() + make_interval(
                secs => LEAST(%(max)s, %(base)s * power(2, LEAST(fence_push_failures, 30))))
        WHERE id = ANY(%(ids)s) AND agent_fence_pending
        """,
        {"ids": list(failed), "base": backoff_s, "max": backoff_max_s},
    )
    return affected(cur)


def hold_init(conn: Conn, host_id: str, until: datetime) -> bool:
    """Give a host no new init before ``until`` (an init's outcome was not seen); never shortens."""
    cur = run(
        conn,
        """
        UPDATE hosts SET init_hold_until = GREATEST(init_hold_until, %(until)s) WHERE id = %(id)s
        """,
        {"id": host_id, "until": until},
    )
    return affected(cur) == 1


def issued_fence(conn: Conn, host_id: str) -> int | None:
    """The highest fence the product ever issued for a host (its counter), or None: no such host."""
    row = run(conn, "SELECT fence FROM hosts WHERE id = %(id)s", {"id": host_id}).fetchone()
    return None if row is None else int(row["fence"])


def hold_agent(conn: Conn, host_id: str, hold: str, detail: str) -> bool:
    """Hold a host for a security event until an admin clears it; True when newly held."""
    cur = run(
        conn,
        """
        UPDATE hosts SET agent_hold = %(hold)s, agent_hold_detail = %(detail)s
        WHERE id = %(id)s AND agent_hold IS NULL
        """,
        {"id": host_id, "hold": hold, "detail": detail},
    )
    return affected(cur) == 1


def clear_agent_hold(conn: Conn, host_id: str) -> bool:
    """Clear a host's security hold; its agent state is then unknown (the next init pushes first)."""
    cur = run(
        conn,
        """
        UPDATE hosts SET agent_hold = NULL, agent_hold_detail = NULL, agent_state_id = NULL
        WHERE id = %(id)s AND agent_hold IS NOT NULL
        """,
        {"id": host_id},
    )
    return affected(cur) == 1


def set_agent_state(conn: Conn, host_id: str, state_id: str) -> None:
    """Record the agent state that has learnt the product's fence."""
    run(conn, "UPDATE hosts SET agent_state_id = %(s)s WHERE id = %(id)s", {"id": host_id, "s": state_id})
