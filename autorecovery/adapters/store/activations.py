"""Activation records: one in flight per host, fenced writes, their steps, and the reaper.

In flight means ``queued``, ``sending`` (fence issued, the init being sent) or ``sent`` (the
agent has the init, or may have it; the record holds the host until ``deadline_at``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from autorecovery.adapters.store.db import Conn, affected, run
from autorecovery.ports.rows import ActivationRow as ActivationRow
from autorecovery.ports.rows import StepRow as StepRow

IN_FLIGHT = ("queued", "sending", "sent")

#: Every column of an activation, and whether its deadline has passed on PostgreSQL's clock.
SELECT = "SELECT *, coalesce(deadline_at <= now(), false) AS past_deadline FROM activations"


def _row(row: dict[str, Any]) -> ActivationRow:
    return ActivationRow(**{k: row[k] for k in ActivationRow.__dataclass_fields__})


def create_many(
    conn: Conn,
    items: Sequence[tuple[str, str]],
    *,
    trigger: str,
    actor: str,
    now: datetime,
    statuses: Sequence[str],
    reason: str,
) -> list[tuple[str, str]]:
    """Queue activations for (activation_id, host_id) pairs in one statement, auditing each.

    A host that already has one queued or running, or whose status is no longer one of
    ``statuses``, gets none. The lease (``queued_at``) is PostgreSQL's clock, not ``now`` (the
    audit's time): the reaper compares it with the same clock, whatever the callers' skew.
    Returns the (activation_id, host_id) pairs created.
    """
    if not items:
        return []
    rows = run(
        conn,
        """
        WITH v AS (SELECT * FROM jsonb_to_recordset(%(rows)s) AS v(id text, host_id text)),
        ins AS (
            INSERT INTO activations (id, host_id, trigger, actor, state, queued_at, sent_at)
            SELECT v.id, v.host_id, %(trigger)s, %(actor)s, 'queued', now(), now()
            FROM v JOIN hosts h ON h.id = v.host_id AND h.status = ANY(%(statuses)s)
            ON CONFLICT DO NOTHING
            RETURNING id, host_id),
        aud AS (
            INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
            SELECT %(now)s, 'host', ins.host_id, 'activation_queued', %(actor)s, %(reason)s,
                   jsonb_build_object('activation_id', ins.id, 'trigger', %(trigger)s)
            FROM ins)
        SELECT id, host_id FROM ins
        """,
        {
            "rows": Jsonb([{"id": a, "host_id": h} for a, h in items]),
            "trigger": trigger,
            "actor": actor,
            "now": now,
            "statuses": list(statuses),
            "reason": reason,
        },
    ).fetchall()
    return [(row["id"], row["host_id"]) for row in rows]


def get(conn: Conn, activation_id: str) -> ActivationRow | None:
    """Return one activation, or None."""
    row = run(conn, SELECT + " WHERE id = %(id)s", {"id": activation_id}).fetchone()
    return _row(row) if row else None


def in_flight(conn: Conn, host_id: str) -> ActivationRow | None:
    """Return the host's activation in flight, or None."""
    row = run(
        conn,
        SELECT + " WHERE host_id = %(id)s AND state = ANY(%(states)s)",
        {"id": host_id, "states": list(IN_FLIGHT)},
    ).fetchone()
    return _row(row) if row else None


def recent(conn: Conn, host_id: str, limit: int = 10) -> list[ActivationRow]:
    """Return the host's latest activations, newest first."""
    rows = run(
        conn,
        SELECT + " WHERE host_id = %(id)s ORDER BY queued_at DESC LIMIT %(n)s",
        {"id": host_id, "n": limit},
    ).fetchall()
    return [_row(r) for r in rows]


def begin(conn: Conn, activation_id: str, now: datetime | None = None) -> int | None:
    """Mark the activation ``sending`` and issue its fencing token (the host's fence, bumped).

    A ``sending`` one is begun again (its holder died or was retried: a new token); a ``sent``
    one never is (its init may run). ``started_at`` (the lease the reaper checks) is
    PostgreSQL's clock; ``now`` is not used.

    Returns:
        The fencing token, or None when the activation is no longer queued or sending.
    """
    row = run(
        conn,
        """
        WITH a AS (SELECT id, host_id FROM activations
                   WHERE id = %(id)s AND state IN ('queued', 'sending') FOR UPDATE),
        f AS (UPDATE hosts h SET fence = h.fence + 1 FROM a WHERE h.id = a.host_id
              AND h.fence < 9223372036854775807  -- bigint: no fence past it is ever issued
              RETURNING h.fence)
        UPDATE activations SET state = 'sending', fence = f.fence, started_at = now()
        FROM f, a WHERE activations.id = a.id
        RETURNING activations.fence
        """,
        {"id": activation_id},
    ).fetchone()
    return None if row is None else int(row["fence"])


def mark_sent(
    conn: Conn,
    activation_id: str,
    *,
    fence: int,
    answer: str,
    protocol: int,
    hold_s: float,
    was_status: str | None = None,
) -> bool:
    """Record that the init went to the agent (``answer``: 'running' or 'unknown'), while the
    activation still holds ``fence``; it holds the host until ``hold_s`` from now (PostgreSQL's
    clock, measured when the answer was seen, not when the init was sent). ``was_status`` is the
    host's status before ``initializing``, for the close."""
    cur = run(
        conn,
        """
        UPDATE activations SET state = 'sent', answer = %(answer)s, protocol = %(protocol)s,
            was_status = %(was)s, deadline_at = now() + make_interval(secs => %(hold)s)
        WHERE id = %(id)s AND state = 'sending' AND fence = %(fence)s
        """,
        {
            "id": activation_id,
            "fence": fence,
            "answer": answer,
            "protocol": protocol,
            "hold": hold_s,
            "was": was_status,
        },
    )
    return affected(cur) == 1


def note_was_status(conn: Conn, activation_id: str, *, fence: int, was_status: str) -> Callable[[], bool]:
    """Keep the host's status before its first ``initializing`` on the ``sending`` activation.

    Only the first attempt's is kept: a retried attempt finds the host ``initializing`` already.
    Returns whether it was kept, read later (in a pipeline, reading waits for the result).
    """
    cur = run(
        conn,
        """
        UPDATE activations SET was_status = coalesce(was_status, %(was)s)
        WHERE id = %(id)s AND state = 'sending' AND fence = %(fence)s
        """,
        {"id": activation_id, "fence": fence, "was": was_status},
    )
    return lambda: affected(cur) == 1


def finish(
    conn: Conn,
    activation_id: str,
    *,
    state: str,
    outcome: str,
    reason: str | None,
    detail: str | None,
    now: datetime,
    fence: int | None,
) -> bool:
    """Close an in-flight activation; with ``fence``, only while it still holds that token.

    Without a fence only an activation that never began (queued, no token) is closed, so a
    duplicate delivery cannot close one that another delivery is running.
    """
    cur = run(
        conn,
        """
        UPDATE activations SET state = %(state)s, outcome = %(outcome)s, reason = %(reason)s,
            detail = %(detail)s, ended_at = %(now)s
        WHERE id = %(id)s AND state IN ('queued', 'sending', 'sent')
          AND (fence = %(fence)s OR (%(fence)s::bigint IS NULL AND state = 'queued'
                                     AND fence IS NULL))
        """,
        {
            "id": activation_id,
            "state": state,
            "outcome": outcome,
            "reason": reason,
            "detail": detail,
            "now": now,
            "fence": fence,
        },
    )
    return affected(cur) == 1


def reap(
    conn: Conn, *, now: datetime, queued_ttl_s: float, running_ttl_s: float, init_hold_s: float = 0.0
) -> list[dict[str, Any]]:
    """Abandon activations past their lease, in one statement.

    A lease: ``queued`` for ``queued_ttl_s``; ``sending`` for ``running_ttl_s`` after it began
    (its holder died: a step never outlives its time limit and lock); ``sent`` for
    ``running_ttl_s`` past its deadline (the step that closes it at the deadline was lost).
    The leases are compared on PostgreSQL's clock, so a caller's skewed clock can neither abandon
    live work nor reap a just-queued activation; ``now`` only stamps the end and the audit.
    Bumps each host's fence so that a paused holder can write nothing afterwards (and, for one
    that began, marks it for the agent, see ``hosts.pending_fences``), returns an
    ``initializing`` host to non_operational (activation_failed), and audits each. A host
    left initializing by a ``sending`` record may still run its init (the holder died during or
    after the call; a v1 agent refuses no second init), so it is held ``init_hold_s`` from ``now``
    (``init_held``, audited), as a give-up holds it.
    """
    return run(
        conn,
        """
        WITH stale AS (
            SELECT id, host_id, state,
                   (SELECT h.status = 'initializing' FROM hosts h WHERE h.id = activations.host_id)
                       AS initializing
            FROM activations
            WHERE (state = 'queued' AND queued_at < now() - make_interval(secs => %(queued_ttl)s))
               OR (state = 'sending' AND started_at < now() - make_interval(secs => %(running_ttl)s))
               OR (state = 'sent' AND deadline_at < now() - make_interval(secs => %(running_ttl)s))
            FOR UPDATE SKIP LOCKED),
        ab AS (
            UPDATE activations a SET state = 'abandoned', outcome = 'abandoned', ended_at = %(now)s,
                detail = 'no result in time (was ' || stale.state || ')'
            FROM stale WHERE a.id = stale.id
            RETURNING a.id, a.host_id, stale.state AS was,
                      (stale.state = 'sending' AND stale.initializing AND %(hold)s > 0) AS held),
        hosts_reset AS (
            UPDATE hosts h SET fence = LEAST(h.fence, 9223372036854775806) + 1,
                -- only one that began had a holder that may still reach the agent
                agent_fence_pending = h.agent_fence_pending OR ab.was <> 'queued',
                status = CASE WHEN h.status = 'initializing' THEN 'non_operational' ELSE h.status END,
                reason = CASE WHEN h.status = 'initializing' THEN 'activation_failed' ELSE h.reason END,
                detail = CASE WHEN h.status = 'initializing'
                              THEN 'activation abandoned: no result in time' ELSE h.detail END,
                status_changed_at = CASE WHEN h.status = 'initializing' THEN %(now)s
                                         ELSE h.status_changed_at END,
                init_hold_until = CASE WHEN ab.held
                    THEN GREATEST(h.init_hold_until, %(now)s + make_interval(secs => %(hold)s))
                    ELSE h.init_hold_until END
            FROM ab WHERE h.id = ab.host_id
            RETURNING h.id),
        aud AS (
            INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
            SELECT %(now)s, 'host', ab.host_id, 'activation_abandoned', 'auto', 'no_result_in_time',
                   jsonb_build_object('activation_id', ab.id, 'was', ab.was)
            FROM ab),
        held AS (
            INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
            SELECT %(now)s, 'host', ab.host_id, 'init_held', 'auto', 'init_outcome_unknown',
                   jsonb_build_object('activation_id', ab.id,
                                      'until', %(now)s + make_interval(secs => %(hold)s))
            FROM ab WHERE ab.held)
        SELECT id, host_id, was FROM ab
        """,
        {"now": now, "queued_ttl": queued_ttl_s, "running_ttl": running_ttl_s, "hold": init_hold_s},
    ).fetchall()


def reset_orphans(conn: Conn, *, now: datetime, before: datetime) -> list[str]:
    """Return hosts left ``initializing`` with no activation in flight to non_operational.

    A backstop: no activation path leaves one, but a host must never stay there for good. The
    fence is bumped (and marked for the agent) and each reset audited.
    """
    rows = run(
        conn,
        """
        WITH orphans AS (
            UPDATE hosts h SET status = 'non_operational', reason = 'activation_failed',
                detail = 'initializing with no activation in flight',
                fence = LEAST(h.fence, 9223372036854775806) + 1,
                agent_fence_pending = true,
                status_changed_at = %(now)s, subject = NULL
            WHERE h.status = 'initializing' AND h.status_changed_at < %(before)s
              AND NOT EXISTS (SELECT 1 FROM activations a WHERE a.host_id = h.id
                              AND a.state IN ('queued', 'sending', 'sent'))
            RETURNING h.id)
        INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
        SELECT %(now)s, 'host', id, 'status_changed', 'auto', 'activation_failed',
               jsonb_build_object('from', 'initializing', 'to', 'non_operational',
                                  'detail', 'initializing with no activation in flight')
        FROM orphans RETURNING object_id
        """,
        {"now": now, "before": before},
    ).fetchall()
    return [r["object_id"] for r in rows]


def mark_enqueue_failed(conn: Conn, pairs: Sequence[tuple[str, str]], now: datetime, error: str) -> None:
    """Close activations whose message never reached the broker, auditing each."""
    run(
        conn,
        """
        WITH f AS (
            UPDATE activations SET state = 'failed', outcome = 'not_enqueued', detail = %(err)s,
                ended_at = %(now)s
            WHERE id = ANY(%(ids)s) AND state = 'queued' RETURNING id, host_id, actor)
        INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
        SELECT %(now)s, 'host', f.host_id, 'activation_not_enqueued', f.actor, 'broker_unavailable',
               jsonb_build_object('activation_id', f.id, 'error', %(err)s)
        FROM f
        """,
        {"ids": [a for a, _ in pairs], "now": now, "err": error},
    )


def resend_queued(conn: Conn, *, now: datetime, after_s: float, max_resends: int) -> list[dict[str, Any]]:
    """Count one more send of each activation queued unstarted since ``after_s`` ago, auditing it.

    Its broker message may be lost (a Redis restart): the caller sends it again under the same
    task id, so a message that was not lost runs once and the other finds it closed. At most
    ``max_resends`` re-sends each; times on PostgreSQL's clock.

    Returns:
        The activations to send again: ``id``, ``host_id``, ``trigger``, ``actor``, ``sends``.
    """
    return run(
        conn,
        """
        WITH again AS (
            UPDATE activations SET sends = sends + 1, sent_at = now()
            WHERE state = 'queued' AND sends <= %(max)s
              AND coalesce(sent_at, queued_at) < now() - make_interval(secs => %(after)s)
            RETURNING id, host_id, trigger, actor, sends),
        aud AS (
            INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
            SELECT %(now)s, 'host', host_id, 'activation_resent', 'auto', 'not_started_in_time',
                   jsonb_build_object('activation_id', id, 'sends', sends)
            FROM again)
        SELECT * FROM again ORDER BY id
        """,
        {"now": now, "after": after_s, "max": max_resends},
    ).fetchall()


def unknown_streak(conn: Conn, host_id: str) -> int:
    """Count the host's latest closed activations in a row that ended on the infrastructure.

    Those whose init outcome was never seen, or whose agent could not be told the fence, since
    the host's last real result; an activation the broker refused (``not_enqueued``) is neither.
    """
    row = run(
        conn,
        """
        SELECT count(*) AS n FROM activations
        WHERE host_id = %(id)s AND outcome IN ('outcome_unknown', 'fence_not_pushed')
          AND ended_at > coalesce((SELECT max(ended_at) FROM activations
                                   WHERE host_id = %(id)s AND state IN ('done', 'failed')
                                     AND outcome IS DISTINCT FROM 'not_enqueued'),
                                  '-infinity')
        """,
        {"id": host_id},
    ).fetchone()
    return int(row["n"]) if row else 0


def add_step(
    conn: Conn,
    activation_id: str,
    step: str,
    task_id: str | None,
    outcome: str,
    next_check: str | None = None,
) -> None:
    """Record one step of an activation (its task id and what it came to); at PostgreSQL's clock.

    ``next_check``: the task id of the check step this one sends next, which becomes the only
    check that may act on the ``sent`` record (one statement with the step).
    """
    run(
        conn,
        """
        WITH token AS (
            UPDATE activations SET check_task_id = %(next)s
            WHERE id = %(id)s AND state = 'sent' AND %(next)s::text IS NOT NULL)
        INSERT INTO activation_steps (activation_id, step, task_id, outcome)
        SELECT id, %(step)s, %(task)s, %(outcome)s FROM activations WHERE id = %(id)s
        """,
        {"id": activation_id, "step": step, "task": task_id, "outcome": outcome[:200], "next": next_check},
    )


def resend_checks(conn: Conn, *, now: datetime, after_s: float) -> list[dict[str, Any]]:
    """Give a new check step to each ``sent`` activation with no step for ``after_s``, auditing it.

    Its check message was lost (a worker killed with it, a broker restart): the caller sends a
    check step under the returned ``check_task_id``, which supersedes any other check message
    of the activation (``check_task_id``), so a message that was not lost after all acts no
    more. The re-send is counted in ``sends`` and recorded as a check step (outcome ``resent``,
    under the new task id), so the
    next run waits ``after_s`` again. Times on PostgreSQL's clock.

    Returns:
        ``id``, ``host_id``, ``trigger``, ``actor``, ``check_task_id``, ``sends``.
    """
    return run(
        conn,
        """
        WITH again AS (
            UPDATE activations a SET check_task_id = gen_random_uuid()::text, sends = a.sends + 1
            WHERE a.state = 'sent'
              AND coalesce((SELECT max(s.at) FROM activation_steps s WHERE s.activation_id = a.id),
                           a.started_at, a.queued_at) < now() - make_interval(secs => %(after)s)
            RETURNING a.id, a.host_id, a.trigger, a.actor, a.check_task_id, a.sends),
        step AS (
            INSERT INTO activation_steps (activation_id, step, task_id, outcome)
            SELECT id, 'check', check_task_id, 'resent: no step for a while'
            FROM again),
        aud AS (
            INSERT INTO audit_log (at, object_type, object_id, event, actor, reason, details)
            SELECT %(now)s, 'host', host_id, 'activation_check_resent', 'auto', 'no_step_in_time',
                   jsonb_build_object('activation_id', id, 'check_task_id', check_task_id)
            FROM again)
        SELECT * FROM again ORDER BY id
        """,
        {"now": now, "after": after_s},
    ).fetchall()


def steps(conn: Conn, activation_ids: Sequence[str]) -> list[StepRow]:
    """Return the steps of these activations, oldest first."""
    rows = run(
        conn,
        """
        SELECT activation_id, step, task_id, outcome, at FROM activation_steps
        WHERE activation_id = ANY(%(ids)s) ORDER BY id
        """,
        {"ids": list(activation_ids)},
    ).fetchall()
    return [StepRow(**r) for r in rows]


def count_by_outcome(conn: Conn) -> list[dict[str, Any]]:
    """Count activations by trigger and outcome (the state while one has no outcome yet)."""
    return run(
        conn,
        """
        SELECT trigger, coalesce(outcome, state) AS outcome, count(*) AS n FROM activations
        GROUP BY trigger, coalesce(outcome, state) ORDER BY 1, 2
        """,
    ).fetchall()
