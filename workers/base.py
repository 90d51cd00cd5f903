"""The task base of activation steps: Celery's own retry policy, give-up, failure reporting,
and the next step of a sent activation (a task with a countdown, never a waiting process).

Transient errors are retried with exponential backoff and full jitter (``autoretry_for``,
``retry_backoff``, ``retry_jitter``, ``max_retries``). A lock held by another delivery of the same
activation is retried once the lock can have expired (its remaining TTL), so that a redelivery
takes over from a dead worker. When retries run out or the soft time limit strikes, the service
gives up, which it does only when nobody holds the object's lock. An activation that ended
failed is recorded first, then the task fails, so that Flower does not show it green.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from billiard.einfo import ExceptionInfo
from celery import Task

from autorecovery.services.activation import LockBusyRetry, Outcome
from models.errors import ActivationFailed, BrokerUnavailable, TransientError
from workers import built_container, send_check, settings

log = logging.getLogger(__name__)

#: Seconds of jitter added to a lock-busy wait, so that duplicates do not retry in step.
BUSY_JITTER_S = 1.0


class ActivationTask(Task):  # type: ignore[misc]
    """An idempotent activation task keyed by its activation id (the Celery task id)."""

    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (TransientError,)
    dont_autoretry_for = (LockBusyRetry,)
    retry_backoff = 2
    retry_backoff_max = 30
    retry_jitter = True
    max_retries = 5
    #: A failed activation is an expected result: FAILURE state, no error log with a traceback.
    throws = (ActivationFailed,)
    #: The kwarg naming the activated object, and the container's service that activates it.
    object_kwarg = "host_id"
    service_name = "activation"
    #: The task of the activation's later steps (ask, close).
    check_task = "autorecovery.check_init"

    def settle(self, activate: Callable[[], Outcome]) -> dict[str, Any]:
        """Run the activation; map a busy lock to a retry and a failed outcome to a failure."""
        try:
            outcome = activate()
        except LockBusyRetry as exc:
            countdown = exc.retry_after_s + random.uniform(0, BUSY_JITTER_S)  # noqa: S311
            log.info("%s: retrying in %.1fs: %s", self.request.id, countdown, exc)
            raise self.retry(exc=exc, countdown=countdown) from exc
        if outcome.check_in_s is not None:
            self._next_step(outcome.check_in_s, outcome.next_check_id)
        if outcome.failed:
            raise ActivationFailed(
                f"{outcome.id_field[:-3]} {outcome.object_id}: activation "
                f"{outcome.activation_id} {outcome.outcome}: {outcome.detail}"
            )
        return outcome.as_dict()

    def retry(
        self,
        args: Any = None,
        kwargs: Any = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Retry (Celery's ``Task.retry``) with a message that can still start when it is due.

        Celery copies the first message's absolute ``expires`` into the retry, which a lock-busy
        wait or a backoff outlasts: the retry would be dropped as revoked, and nothing would give
        the activation up. Once the activation has begun, the housekeeping never sends it again
        (it re-sends only ``queued`` ones), so the retry expires ``activation_message_ttl_s``
        after it is due. A queued one (or one whose state cannot be read) keeps the first
        expiry: its re-send comes only once that has passed, and the two never both run.
        """
        if "expires" not in options and self.request.expires is not None and not self._is_queued():
            wait_s = self.default_retry_delay if countdown is None else countdown
            due = eta or datetime.now(UTC) + timedelta(seconds=wait_s)
            options["expires"] = due + timedelta(seconds=settings.activation_message_ttl_s)
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def _is_queued(self) -> bool:
        """Whether this activation may still be re-sent; True when that cannot be read."""
        deps = built_container()
        activation_id = (self.request.kwargs or {}).get("activation_id")
        if deps is None or activation_id is None:
            return True
        try:
            return bool(getattr(deps, self.service_name).is_queued(activation_id))
        except Exception:  # PostgreSQL down: keep the first expiry (the safe side)
            log.warning("%s: activation state unreadable; retry keeps its first expiry", activation_id)
            return True

    def _next_step(self, countdown_s: float, task_id: str | None = None) -> None:
        """Send the activation's next step with the same kwargs (host, activation, trigger, actor).

        If the broker refuses it, the record still holds the object: the reaper closes it past
        its deadline.
        """
        kwargs = self.request.kwargs or {}
        target = {self.object_kwarg: kwargs[self.object_kwarg]}
        try:
            send_check(
                self.check_task,
                kwargs["activation_id"],
                target,
                kwargs.get("trigger", "auto"),
                kwargs.get("actor", "auto"),
                countdown_s,
                task_id,
            )
        except BrokerUnavailable as exc:
            log.warning("%s: next step of activation %s not sent: %s", target, kwargs["activation_id"], exc)

    def on_failure(
        self,
        exc: Exception,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: ExceptionInfo,
    ) -> None:
        """Give up on an activation that did not record its own end."""
        if isinstance(exc, ActivationFailed):
            return
        deps = built_container()
        if deps is None:
            # The worker's parent, after a hard time limit killed the pool process: it builds
            # no pool (forked processes would inherit it broken). The lease runs out and the
            # housekeeping reaps the activation.
            log.warning(
                "%s: activation %s ended by %s; left to the housekeeping",
                kwargs.get(self.object_kwarg),
                task_id,
                type(exc).__name__,
            )
            return
        service = getattr(deps, self.service_name)
        error = (
            f"retries exhausted: {exc}" if isinstance(exc, TransientError) else f"{type(exc).__name__}: {exc}"
        )
        try:
            service.give_up(kwargs["activation_id"], kwargs[self.object_kwarg], error)
        except Exception:  # a process boundary: the reaper closes it later
            log.exception("%s: cannot give up activation %s", kwargs.get(self.object_kwarg), task_id)
