"""Ticks: one claimed per interval, cut into batches any worker runs, closed by the last batch.

Every time here is PostgreSQL's (``clock_timestamp()``): the coordinators and batches of one tick
run on different machines whose clocks need not agree.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg.types.json import Jsonb

from autorecovery.adapters.store.db import Conn, affected, run
from autorecovery.ports.rows import BatchDone as BatchDone
from autorecovery.ports.rows import BatchStart as BatchStart
from autorecovery.ports.rows import PushedCut
from autorecovery.ports.rows import TickClaim as TickClaim

#: Serialises tick claims (two coordinators at once, from duplicate beats or redeliveries).
TICK_CLAIM_LOCK = 0x61725F7469636B  # "ar_tick"
#: Statements ``finish_batch`` runs for a batch that is recorded (counted in the tick's summary).
FINISH_BATCH_STATEMENTS = 2


def claim(
    conn: Conn,
    tick_id: str,
    *,
    batch_size: int,
    min_spacing_s: float,
    deadline_s: float,
    pushed: PushedCut | None = None,
) -> TickClaim:
    """Claim a new tick unless one started less than ``min_spacing_s`` ago or one still runs.

    A tick still running after ``deadline_s`` is abandoned and this claim takes over from it.
    The first host id of each batch is returned: batch ``i`` runs the ids from ``bounds[i]`` up
    to (not including) ``bounds[i + 1]``. A batch holds ``batch_size`` hosts, or with ``pushed``
    up to ``pushed.size`` hosts that pushed their reports (``PushedCut``).
    """
    run(conn, "SELECT pg_advisory_xact_lock(%(key)s)", {"key": TICK_CLAIM_LOCK})
    last = run(
        conn,
        """
        SELECT id, state, extract(epoch FROM clock_timestamp() - started_at)::float8 AS age_s
        FROM ticks ORDER BY started_at DESC LIMIT 1
        """,
    ).fetchone()
    took_over = None
    if last is not None:
        refused = _refusal(last, min_spacing_s, deadline_s)
        if refused is not None:
            return TickClaim(None, refused=refused)
        if last["state"] in ("running", "closing"):
            took_over = last["id"]
            abandon(conn, took_over, f"taken over by tick {tick_id} after {last['age_s']:.1f}s")
    bounds = tuple(row["id"] for row in run(conn, _CUT, _cut_params(batch_size, pushed)).fetchall())
    run(
        conn,
        "INSERT INTO ticks (id, state, batches) VALUES (%(id)s, 'running', %(n)s)",
        {"id": tick_id, "n": len(bounds)},
    )
    return TickClaim(tick_id, took_over=took_over, bounds=bounds)


#: The first host of each batch. A host to pull weighs ``pushed_size``, one that pushed weighs
#: ``size``: a batch starts where the running weight crosses a multiple of ``size * pushed_size``
#: (``size`` hosts to pull, or ``pushed_size`` that pushed, or the same share of each).
_CUT = """
SELECT id FROM (
    SELECT h.id, w.w, sum(w.w) OVER (ORDER BY h.id) AS upto
    FROM hosts h LEFT JOIN reports r ON r.host_id = h.id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN r.source = 'push' AND r.reported_at BETWEEN %(after)s AND %(before)s
                    THEN %(size)s ELSE %(pushed_size)s END::integer AS w) w
) AS weighed
WHERE upto = w OR (upto - 1) / %(block)s <> (upto - w - 1) / %(block)s
ORDER BY id
"""


def _cut_params(batch_size: int, pushed: PushedCut | None) -> dict[str, Any]:
    pushed_size = batch_size if pushed is None else pushed.size
    return {
        "size": batch_size,
        "pushed_size": pushed_size,
        "block": batch_size * pushed_size,
        "after": None if pushed is None else pushed.after,
        "before": None if pushed is None else pushed.before,
    }


def _refusal(last: dict[str, Any], min_spacing_s: float, deadline_s: float) -> str | None:
    age_s = float(last["age_s"])
    if age_s < min_spacing_s:
        return f"duplicate: tick {last['id']} started {age_s:.2f}s ago (one tick per interval)"
    if last["state"] in ("running", "closing") and age_s < deadline_s:
        return f"tick {last['id']} is still running ({age_s:.1f}s); not piling on"
    return None


def abandon(conn: Conn, tick_id: str, detail: str) -> bool:
    """Mark an unfinished tick abandoned: its late batches stop, nothing closes it."""
    row = run(
        conn,
        """
        UPDATE ticks SET state = 'abandoned', ended_at = clock_timestamp(), detail = %(detail)s
        WHERE id = %(id)s AND state IN ('running', 'closing') RETURNING id
        """,
        {"id": tick_id, "detail": detail},
    ).fetchone()
    return row is not None


def batch_refusal(conn: Conn, tick_id: str, idx: int) -> str | None:
    """Why a batch must not run (its tick is over, or it already ran), else None."""
    row = run(
        conn,
        """
        SELECT t.state,
               EXISTS (SELECT 1 FROM tick_batches b WHERE b.tick_id = t.id AND b.idx = %(idx)s) AS done
        FROM ticks t WHERE t.id = %(id)s
        """,
        {"id": tick_id, "idx": idx},
    ).fetchone()
    if row is None:
        return f"tick {tick_id} is unknown"
    if row["done"]:
        return f"batch {idx} of tick {tick_id} already ran"
    if row["state"] != "running":
        return f"tick {tick_id} is {row['state']}"
    return None


def hold_running(conn: Conn, tick_id: str) -> bool:
    """Lock a tick's row for this transaction; True while it is still running.

    A batch records its hosts' changes under this lock, so an abandon (a takeover) either comes
    first and the late batch writes nothing, or waits until the batch is recorded.
    """
    row = run(conn, "SELECT state FROM ticks WHERE id = %(id)s FOR UPDATE", {"id": tick_id}).fetchone()
    return row is not None and row["state"] == "running"


def finish_batch(
    conn: Conn, tick_id: str, idx: int, summary: dict[str, Any], candidates: list[dict[str, Any]]
) -> BatchDone:
    """Record a batch; the batch that completes a running tick moves it to ``closing``.

    The tick's row is locked first, so two batches finishing at once see each other.
    """
    return queue_finish_batch(conn, tick_id, idx, summary, candidates)()


def queue_finish_batch(
    conn: Conn, tick_id: str, idx: int, summary: dict[str, Any], candidates: list[dict[str, Any]]
) -> Callable[[], BatchDone]:
    """Send ``finish_batch``'s statements; return a function that reads what they did.

    In a pipeline nothing waits until that function is called.
    """
    inserted = run(
        conn,
        """
        WITH tick AS (SELECT id FROM ticks WHERE id = %(id)s AND state = 'running' FOR UPDATE)
        INSERT INTO tick_batches (tick_id, idx, summary, candidates)
        SELECT tick.id, %(idx)s, %(summary)s, %(candidates)s FROM tick
        ON CONFLICT DO NOTHING RETURNING idx
        """,
        {"id": tick_id, "idx": idx, "summary": Jsonb(summary), "candidates": Jsonb(candidates)},
    )
    # A statement of its own (a fresh snapshot) while we hold the row: it sees every batch that
    # finished before us. A batch that was not recorded (tick over, or a duplicate) finds the
    # tick closing already, or not complete.
    closing = run(
        conn,
        """
        UPDATE ticks SET state = 'closing'
        WHERE id = %(id)s AND state = 'running'
          AND batches <= (SELECT count(*) FROM tick_batches WHERE tick_id = %(id)s)
        RETURNING id
        """,
        {"id": tick_id},
    )
    def read() -> BatchDone:
        recorded = inserted.fetchone() is not None
        closes = closing.fetchone() is not None
        return BatchDone(recorded=recorded, closes=recorded and closes)

    return read


def keep_context(conn: Conn, tick_id: str, context: dict[str, Any], key: str) -> None:
    """Keep the cluster context a tick's batches evaluate against, and its key."""
    run(
        conn,
        "UPDATE ticks SET context = %(context)s, context_key = %(key)s WHERE id = %(id)s",
        {"id": tick_id, "context": Jsonb(context), "key": key},
    )


def batch_start(conn: Conn, tick_id: str, idx: int, *, with_context: bool) -> Callable[[], BatchStart]:
    """Send the query of ``batch_refusal``, the tick's context key (and context, ``with_context``).

    Returns a function that reads them: in a pipeline nothing waits until it is called.
    """
    cur = run(
        conn,
        """
        SELECT t.state, t.context_key, CASE WHEN %(with)s THEN t.context END AS context,
               EXISTS (SELECT 1 FROM tick_batches b WHERE b.tick_id = t.id AND b.idx = %(idx)s) AS done
        FROM ticks t WHERE t.id = %(id)s
        """,
        {"id": tick_id, "idx": idx, "with": with_context},
    )

    def read() -> BatchStart:
        row = cur.fetchone()
        if row is None:
            return BatchStart(f"tick {tick_id} is unknown")
        if row["done"]:
            return BatchStart(f"batch {idx} of tick {tick_id} already ran")
        if row["state"] != "running":
            return BatchStart(f"tick {tick_id} is {row['state']}")
        return BatchStart(None, row["context_key"], row["context"])

    return read


def start_closing(conn: Conn, tick_id: str) -> bool:
    """Move a tick with no batch at all (an empty fleet) straight to ``closing``."""
    row = run(
        conn,
        "UPDATE ticks SET state = 'closing' WHERE id = %(id)s AND state = 'running' AND batches = 0"
        " RETURNING id",
        {"id": tick_id},
    ).fetchone()
    return row is not None


def batch_results(conn: Conn, tick_id: str) -> list[dict[str, Any]]:
    """Every finished batch of a tick: ``idx``, ``summary`` and ``candidates``, in order."""
    return list(
        run(
            conn,
            "SELECT idx, summary, candidates FROM tick_batches WHERE tick_id = %(id)s ORDER BY idx",
            {"id": tick_id},
        ).fetchall()
    )


def close(conn: Conn, tick_id: str, summary: dict[str, Any]) -> float | None:
    """Record a closing tick as done with its summary; return its duration (PostgreSQL's clock)."""
    row = run(
        conn,
        """
        UPDATE ticks SET state = 'done', ended_at = clock_timestamp(), summary = %(summary)s
        WHERE id = %(id)s AND state = 'closing'
        RETURNING extract(epoch FROM ended_at - started_at)::float8 AS duration_s
        """,
        {"id": tick_id, "summary": Jsonb(summary)},
    ).fetchone()
    return None if row is None else float(row["duration_s"])


def note(conn: Conn, tick_id: str, summary: dict[str, Any]) -> None:
    """Keep the coordinator's part of a tick's summary until the tick closes."""
    run(
        conn,
        "UPDATE ticks SET summary = %(summary)s WHERE id = %(id)s",
        {"id": tick_id, "summary": Jsonb(summary)},
    )


def get(conn: Conn, tick_id: str) -> dict[str, Any] | None:
    """One tick's row."""
    return run(conn, "SELECT * FROM ticks WHERE id = %(id)s", {"id": tick_id}).fetchone()


def claim_housekeeping(conn: Conn, holder: str, lease_s: float) -> bool:
    """Take the housekeeping lease for ``lease_s`` unless another run holds it; True when taken."""
    cur = run(
        conn,
        """
        UPDATE housekeeping_lease
        SET holder = %(holder)s, until = clock_timestamp() + make_interval(secs => %(lease)s)
        WHERE until <= clock_timestamp()
        """,
        {"holder": holder, "lease": lease_s},
    )
    return affected(cur) == 1


def release_housekeeping(conn: Conn, holder: str) -> bool:
    """Give the housekeeping lease back, if this holder still has it."""
    cur = run(
        conn,
        "UPDATE housekeeping_lease SET until = '-infinity' WHERE holder = %(holder)s",
        {"holder": holder},
    )
    return affected(cur) == 1
