"""The fenced-activation core: one state machine for hosts and storage domains.

An activation is a record, ``queued → sending → sent → done | failed | abandoned`` (or
``skipped``), advanced by short steps, each under the object's lock (whose TTL outlives the
step's time limit, so it is never renewed):

- ``run`` (send): lock → begin (``sending``, the fencing token) → the kind's work, each side
  effect behind ``guard`` → a fenced close, or ``sent`` with a deadline;
- ``check``: lock → the kind's ``settle`` of a ``sent`` record (ask the agent, close under the
  same fence, or ask again later; at its deadline the outcome is unknown).

No step waits on an agent longer than one call's timeout: a hung agent holds its own record and
nothing else. A busy lock is a skip (another activation) or a retry (another delivery of this
one); giving up happens only under the lock, so it never closes a live holder's activation.
Infrastructure outcomes (lock lost, gave up, outcome unknown) end ``abandoned`` and charge nobody.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from autorecovery.adapters.store.db import Conn, Database
from autorecovery.ports import Lock, LockFactory
from autorecovery.services import Clock
from autorecovery.services.activation.kinds import ActivationRef, Closing, Kind, LockBusyRetry, Outcome, Run
from models.audit_events import CLOSING_EVENTS
from models.domain import IN_FLIGHT_STATES, ActivationState, Reason, Trigger
from models.errors import LockLost, LockServiceUnavailable, StaleFence, StoreUnavailable
from models.fencing import next_fence
from models.policy import Skip

log = logging.getLogger(__name__)

CloseWrites = Callable[[Conn, datetime], None]


class SendingKind(Kind, Protocol):
    """A kind whose init can be left ``sent`` (its outcome asked for, or held until a deadline)."""

    def mark_sent(
        self,
        conn: Conn,
        activation_id: str,
        *,
        fence: int,
        answer: str,
        protocol: int,
        hold_s: float,
        was_status: str | None,
    ) -> bool:
        """Move ``sending`` to ``sent`` while it holds ``fence``."""
        ...


#: The outcome of a step that found nothing to do (another delivery did it): it writes nothing.
DUPLICATE = "duplicate"
#: Shortest wait before a redelivery looks at a busy lock again.
MIN_BUSY_WAIT_S = 1.0


class FencedActivations:
    """Runs activations of any kind; a holder that lost its lock or fence writes nothing."""

    def __init__(
        self,
        db: Database,
        lock: LockFactory,
        *,
        clock: Clock,
        lock_ttl_s: float,
        poll_s: float = 1.0,
        close_attempts: int = 4,
        close_wait_max_s: float = 2.0,
    ) -> None:
        self.db = db
        self.lock = lock
        self.clock = clock
        self.lock_ttl_s = lock_ttl_s
        self.poll_s = poll_s
        self.close_attempts = close_attempts
        self.close_wait_max_s = close_wait_max_s

    @contextmanager
    def statements(self) -> Iterator[Conn]:
        """Statements each in a transaction of its own, one round trip each (no BEGIN, no COMMIT).

        For a step's reads (each sees its own snapshot, as in a READ COMMITTED transaction
        anyway) and its single-statement writes; never for writes that must go together.
        """
        with self.db.autocommit() as conn:
            yield conn

    def run(self, kind: Kind, activation_id: str, object_id: str, task_id: str | None = None) -> Outcome:
        """The first step (send): begin, re-check, send; close, or leave it ``sent``.

        Raises:
            LockBusyRetry: another delivery of this activation holds the lock; try again later.
            TransientError: Redis or PostgreSQL failed before the outcome was recorded.
        """
        outcome = self._send(kind, activation_id, object_id)
        if outcome.outcome != DUPLICATE:  # a duplicate delivery writes nothing
            outcome = _with_next_check(outcome)
            kind.record_step(activation_id, "send", task_id, outcome.outcome, outcome.next_check_id)
        return outcome

    def _send(self, kind: Kind, activation_id: str, object_id: str) -> Outcome:
        with self.statements() as conn:
            ref = kind.load(conn, activation_id)
        if ref is not None and ref.state == ActivationState.SENT:
            # A redelivered first step (its worker died after recording it sent): make sure
            # the activation is asked about, never send again.
            return kind.outcome(
                activation_id, object_id, "sent", "init already sent", ref.fence, check_in_s=self.poll_s
            )
        if ref is None or ref.state not in IN_FLIGHT_STATES:
            state = ref.state if ref else "missing"
            log.info("%s %s: activation %s is %s; nothing to do", kind.noun, object_id, activation_id, state)
            return kind.outcome(activation_id, object_id, DUPLICATE, f"activation is {state}")
        lock = self.lock(kind.lock_key(object_id), self.lock_ttl_s)
        if not lock.acquire(owner=activation_id):
            return self._busy(kind, ref, lock)
        try:
            run = self._begin(kind, ref, lock)
            if run is None:
                return kind.outcome(activation_id, object_id, "duplicate", "activation closed before start")
            try:
                return kind.work(run)
            except LockLost as exc:
                return self.close(kind, run, Closing.lock_lost(str(exc)))
            except StaleFence as exc:
                return self.wrote_nothing(kind, run, exc)
        finally:
            lock.release()

    def check(self, kind: Kind, activation_id: str, object_id: str, task_id: str | None = None) -> Outcome:
        """A later step of a ``sent`` activation: ask, close under its fence, or ask again later.

        Raises:
            TransientError: Redis or PostgreSQL failed before the outcome was recorded.
        """
        outcome = self._check(kind, activation_id, object_id, task_id)
        if outcome.outcome != DUPLICATE:
            outcome = _with_next_check(outcome)
            kind.record_step(activation_id, "check", task_id, outcome.outcome, outcome.next_check_id)
        return outcome

    def _check(self, kind: Kind, activation_id: str, object_id: str, task_id: str | None) -> Outcome:
        with self.statements() as conn:
            ref = kind.load(conn, activation_id)
        if ref is None or ref.state != ActivationState.SENT or ref.fence is None:
            state = ref.state if ref else "missing"
            return kind.outcome(activation_id, object_id, DUPLICATE, f"activation is {state}")
        if task_id is not None and ref.check_task_id not in (None, task_id):
            # Another check step took over (a redelivered send step, the housekeeping's re-send
            # of a check it thought lost): this message's chain of checks ends here.
            log.info(
                "%s %s: check %s of activation %s superseded by %s",
                kind.noun, object_id, task_id, activation_id, ref.check_task_id,
            )
            return kind.outcome(
                activation_id, object_id, DUPLICATE, f"superseded by check {ref.check_task_id}"
            )
        lock = self.lock(kind.lock_key(object_id), self.lock_ttl_s)
        if not lock.acquire(owner=activation_id):
            # Another step of this activation (a duplicate delivery) holds it: ask again later.
            return kind.outcome(
                activation_id,
                object_id,
                "sent",
                "lock busy; asked again later",
                ref.fence,
                check_in_s=self.poll_s,
            )
        try:
            run = Run(
                ref.id,
                ref.object_id,
                ref.fence,
                Trigger(ref.trigger),
                ref.actor,
                lock,
                state=ActivationState.SENT,
            )
            try:
                self.guard(kind, run)
                return kind.settle(run, ref)
            except LockLost as exc:
                return kind.outcome(
                    activation_id,
                    object_id,
                    "sent",
                    f"asked again later: {exc}",
                    ref.fence,
                    check_in_s=self.poll_s,
                )
            except StaleFence as exc:
                return self.wrote_nothing(kind, run, exc)
        finally:
            lock.release()

    def _busy(self, kind: Kind, ref: ActivationRef, lock: Lock) -> Outcome:
        """A busy lock: wait for another delivery of this activation, skip for another one."""
        holder = lock.holder()
        if ref.state == ActivationState.SENDING or (holder or "").startswith(f"{ref.id}:"):
            wait_s = max(lock.remaining_ttl_s() or 0.0, MIN_BUSY_WAIT_S)
            raise LockBusyRetry(
                f"{kind.noun} {ref.object_id}: activation {ref.id} is held by another delivery",
                retry_after_s=wait_s,
            )
        now = self.clock()
        detail = "another activation holds the lock"
        closing = Closing(ActivationState.SKIPPED, Skip.LOCK_BUSY.value, detail, reason=Skip.LOCK_BUSY.value)
        with self.db.transaction() as conn:
            closed = kind.finish(conn, ref.id, closing, now, None)
            if closed:
                self.audit(
                    conn,
                    kind,
                    ref.object_id,
                    "activation_skipped",
                    ref.actor,
                    Skip.LOCK_BUSY.value,
                    {"activation_id": ref.id},
                )
        if not closed:
            log.info("%s %s: activation %s began elsewhere; leaving it", kind.noun, ref.object_id, ref.id)
            return kind.outcome(ref.id, ref.object_id, "duplicate", "another delivery runs this activation")
        log.info("%s %s: activation %s skipped: %s", kind.noun, ref.object_id, ref.id, detail)
        return kind.outcome(ref.id, ref.object_id, Skip.LOCK_BUSY.value, detail)

    def _begin(self, kind: Kind, ref: ActivationRef, lock: Lock) -> Run | None:
        """Issue the fencing token, audited."""
        now = self.clock()
        with self.db.transaction() as conn:
            fence = kind.begin(conn, ref.id, now)
            if fence is None:
                return None
            self.audit(
                conn,
                kind,
                ref.object_id,
                "activation_started",
                ref.actor,
                ref.trigger,
                {"activation_id": ref.id, "fence": fence},
            )
        log.info(
            "%s %s: activation %s started (fence %s, %s by %s)",
            kind.noun,
            ref.object_id,
            ref.id,
            fence,
            ref.trigger,
            ref.actor,
        )
        return Run(
            ref.id,
            ref.object_id,
            fence,
            Trigger(ref.trigger),
            ref.actor,
            lock,
            resumed=ref.state == ActivationState.SENDING,
        )

    def is_queued(self, kind: Kind, activation_id: str) -> bool:
        """True while the activation has not begun: only then may the housekeeping re-send it."""
        with self.db.transaction() as conn:
            ref = kind.load(conn, activation_id)
        return ref is not None and ref.state == ActivationState.QUEUED

    def guard(self, kind: Kind, run: Run) -> None:
        """Check, right before a side effect, that this activation may still act.

        Raises:
            LockLost: the lock is no longer ours in Redis (asked now, not the renewer's last word).
            StaleFence: PostgreSQL no longer runs this activation with our fence.
        """
        if not run.lock.is_owned():
            raise LockLost(f"{kind.noun} {run.object_id}: the lock was lost")
        with self.statements() as conn:
            ref = kind.load(conn, run.activation_id)
        if ref is None or ref.state != run.state or ref.fence != run.fence:
            raise StaleFence(
                f"activation {run.activation_id} is no longer {run.state} with fence {run.fence}"
            )

    def mark_sent(
        self, kind: SendingKind, run: Run, *, answer: str, protocol: int, hold_s: float, was: str | None
    ) -> Outcome:
        """Record the init sent (``answer``: 'running' or 'unknown'); it holds the object until
        ``hold_s`` from now, and its next step is due in ``poll_s``.

        Raises:
            StaleFence: the activation no longer holds its fence.
        """
        with self.db.transaction() as conn:
            if not kind.mark_sent(
                conn,
                run.activation_id,
                fence=run.fence,
                answer=answer,
                protocol=protocol,
                hold_s=hold_s,
                was_status=was,
            ):
                raise StaleFence(f"activation {run.activation_id} no longer holds fence {run.fence}")
            self.audit(
                conn,
                kind,
                run.object_id,
                "init_sent",
                run.actor,
                f"agent answer: {answer}",
                {"activation_id": run.activation_id, "fence": run.fence, "hold_s": hold_s},
            )
        log.info(
            "%s %s: activation %s sent (fence %s, agent answer %s); held %gs at most",
            kind.noun,
            run.object_id,
            run.activation_id,
            run.fence,
            answer,
            hold_s,
        )
        return kind.outcome(
            run.activation_id,
            run.object_id,
            "sent",
            f"init sent; agent answer: {answer}",
            run.fence,
            check_in_s=self.poll_s,
        )

    def close(self, kind: Kind, run: Run, closing: Closing, writes: CloseWrites | None = None) -> Outcome:
        """Close the activation under its fence, with the kind's own writes, in one transaction.

        A PostgreSQL failure is retried here (bounded, still under the lock), so that a result
        already obtained is recorded instead of the whole activation running again.
        """
        retrying = Retrying(
            retry=retry_if_exception_type(StoreUnavailable),
            stop=stop_after_attempt(self.close_attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=self.close_wait_max_s, jitter=0.2),
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self._write_close(kind, run, closing, writes)
        except StaleFence as exc:
            return self.wrote_nothing(kind, run, exc)
        log.info(
            "%s %s: activation %s %s (%s: %s)",
            kind.noun,
            run.object_id,
            run.activation_id,
            closing.outcome,
            closing.reason,
            closing.detail,
        )
        return kind.outcome(
            run.activation_id,
            run.object_id,
            closing.outcome,
            closing.detail,
            run.fence,
            failed=closing.is_failure,
        )

    def _write_close(self, kind: Kind, run: Run, closing: Closing, writes: CloseWrites | None) -> None:
        now = self.clock()
        with self.db.transaction() as conn:
            if not kind.finish(conn, run.activation_id, closing, now, run.fence):
                if self._closed_by_us(kind, conn, run, closing):
                    return  # an earlier attempt committed, only its answer was lost
                raise StaleFence(f"activation {run.activation_id} no longer holds fence {run.fence}")
            if writes is not None:
                writes(conn, now)
            self.audit(
                conn,
                kind,
                run.object_id,
                CLOSING_EVENTS[closing.state],
                run.actor,
                closing.outcome,
                {"activation_id": run.activation_id, "fence": run.fence, "detail": closing.detail},
            )

    @staticmethod
    def _closed_by_us(kind: Kind, conn: Conn, run: Run, closing: Closing) -> bool:
        ref = kind.load(conn, run.activation_id)
        return ref is not None and (ref.fence, ref.state, ref.outcome) == (
            run.fence,
            closing.state,
            closing.outcome,
        )

    def wrote_nothing(self, kind: Kind, run: Run, exc: Exception) -> Outcome:
        """A superseded holder's end: nothing written, said so."""
        log.warning(
            "%s %s: activation %s lost its fence; wrote nothing: %s",
            kind.noun,
            run.object_id,
            run.activation_id,
            exc,
        )
        return kind.outcome(run.activation_id, run.object_id, "stale_fence", str(exc), run.fence)

    def give_up(self, kind: Kind, activation_id: str, object_id: str, error: str) -> bool:
        """Close an activation whose retries ran out, only under the lock; True when closed.

        A live holder (another delivery) keeps its activation. The fence is bumped, so that a
        paused attempt can write nothing afterwards. Nothing is charged to the object.
        """
        lock = self.lock(kind.lock_key(object_id), self.lock_ttl_s)
        try:
            if not lock.acquire(owner=activation_id):
                log.warning(
                    "%s %s: activation %s not given up: its lock has a holder",
                    kind.noun,
                    object_id,
                    activation_id,
                )
                return False
        except LockServiceUnavailable as exc:
            log.warning("%s %s: activation %s not given up: %s", kind.noun, object_id, activation_id, exc)
            return False
        try:
            return self._give_up_locked(kind, activation_id, object_id, error[:500])
        finally:
            lock.release()

    def _give_up_locked(self, kind: Kind, activation_id: str, object_id: str, error: str) -> bool:
        now = self.clock()
        with self.db.transaction() as conn:
            ref = kind.load(conn, activation_id)
            if ref is None or ref.state not in IN_FLIGHT_STATES:
                return False
            closing = Closing(
                ActivationState.ABANDONED, "gave_up", error, reason=Reason.ACTIVATION_FAILED.value
            )
            if not kind.finish(conn, activation_id, closing, now, ref.fence):
                return False
            if ref.fence is not None:
                kind.release(conn, ref, error, now)
                kind.raise_fence(conn, object_id, ref.fence, next_fence(ref.fence))
            self.audit(
                conn,
                kind,
                object_id,
                "activation_abandoned",
                ref.actor,
                "gave_up",
                {"activation_id": activation_id, "error": error},
            )
        log.error("%s %s: activation %s gave up: %s", kind.noun, object_id, activation_id, error)
        return True

    def audit(
        self,
        conn: Conn,
        kind: Kind,
        object_id: str,
        event: str,
        actor: str,
        reason: str | None,
        details: dict[str, Any],
    ) -> None:
        """Add one audit entry about the activated object."""
        kind.audit_log.add(
            conn,
            at=self.clock(),
            object_type=kind.object_type,
            object_id=object_id,
            event=event,
            actor=actor,
            reason=reason,
            details=details,
        )


def _with_next_check(outcome: Outcome) -> Outcome:
    """Name the check step an outcome sends next (its task id), when it sends one."""
    if outcome.check_in_s is None or outcome.next_check_id is not None:
        return outcome
    return replace(outcome, next_check_id=str(uuid.uuid4()))
