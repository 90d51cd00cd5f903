"""Run accepted operations (init, connect) in threads, one at a time, as ``ProtocolState`` allows."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from hostagent.protocol import InitRecord, ProtocolState
from models.assessment import Problem
from models.domain import Reason

log = logging.getLogger(__name__)

Work = Callable[[], Problem | None]
T = TypeVar("T")


class Operations:
    """Starts the work of an operation ``ProtocolState`` accepted, and lets callers wait for it.

    The work runs in its own thread, so a caller that hangs up (timeout, lost link) never stops
    an init half-way: it ends, and its result is kept for ``GET /init/{activation_id}``.
    """

    def __init__(self, state: ProtocolState, host_id: str) -> None:
        self.state = state
        self.host_id = host_id
        self._lock = threading.Lock()
        self._futures: dict[tuple[str, str], Future[InitRecord]] = {}
        #: Why the state could not be saved last time (None once a save succeeds): the report
        #: says so, and every init is refused (503 ``state_unwritable``) while it lasts.
        self.state_error: str | None = None

    def submit(
        self, scope: str, fence: int, activation_id: str, work: Work
    ) -> tuple[InitRecord, Future[InitRecord] | None]:
        """Begin an operation (or find the one it repeats); return its record and, while it runs, its future.

        Raises:
            StaleFence, InitBusy: as ``ProtocolState.begin``; nothing was started.
        """
        key = (scope, activation_id)
        with self._lock:
            record, is_new = self.saving(lambda: self.state.begin(scope, fence, activation_id))
            if not is_new:
                return record, self._futures.get(key) if record.is_running else None
            future: Future[InitRecord] = Future()
            future.set_running_or_notify_cancel()  # a caller's cancelled wait never cancels the work
            self._futures[key] = future
        log.info("host %s: %s %s started with fence %d", self.host_id, scope, activation_id, fence)
        thread = threading.Thread(
            target=self._run, args=(record, work, future), name=f"{scope} {activation_id}"
        )
        thread.daemon = True
        thread.start()
        return record, future

    def saving(self, change: Callable[[], T]) -> T:
        """Run a change of the state; keep ``state_error`` up to date with how its save went.

        Raises:
            OSError: the state could not be saved (the change did not happen).
        """
        try:
            result = change()
        except OSError as exc:
            self.state_error = f"cannot save the agent's state: {exc.strerror or exc}"
            log.error("host %s: %s", self.host_id, self.state_error)
            raise
        self.state_error = None
        return result

    def _run(self, record: InitRecord, work: Work, future: Future[InitRecord]) -> None:
        try:
            problem = work()
        except Exception as exc:  # the operation's boundary: it must end with a result
            log.exception("host %s: %s %s failed", self.host_id, record.scope, record.activation_id)
            problem = Problem(Reason.GENERAL, f"{record.scope} failed: {type(exc).__name__}: {exc}")
        try:
            ended = self.state.finish(
                record,
                ok=problem is None,
                reason=None if problem is None else problem.reason.value,
                detail=None if problem is None else problem.detail,
            )
        except OSError as exc:
            self.state_error = f"cannot save the agent's state: {exc.strerror or exc}"
            log.exception(
                "host %s: could not save the end of %s %s", self.host_id, record.scope, record.activation_id
            )
            ended = record
        log.info(
            "host %s: %s %s ended: %s",
            self.host_id,
            record.scope,
            record.activation_id,
            "ok" if problem is None else f"{problem.reason.value}: {problem.detail}",
        )
        with self._lock:
            self._futures.pop((record.scope, record.activation_id), None)
        future.set_result(ended)
