"""Run the simulator's fenced agent calls (init, storage-domain connect) and keep their record.

Each accepted call runs as its own task, so that it goes on after its caller gives up, as an
init on a real host does: the record then shows it running, and a later init beside it is an
overlap. Protocol v2 decisions (stale fence, busy, the same init again) come from
``harness.sim.initstate``; this module only runs what it accepts and records every call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from harness.sim.initstate import BusyRefused, FenceRefused, InitLedger, InitRecord
from harness.sim.record import ConnectCall, InitCall, find_connect_overlaps, find_overlaps

logger = logging.getLogger(__name__)

#: What a call does once accepted: None when it succeeded, else (reason, detail).
Work = Callable[[], Awaitable[tuple[str, str] | None]]
#: A ledger's key: (host_id,) for init, (host_id, sd_id) for a storage domain's connect.
Key = tuple[str, ...]
CallT = TypeVar("CallT", InitCall, ConnectCall)

CANCELLED_DETAIL = "the simulator stopped during the call"


@dataclass(frozen=True, slots=True)
class Answer:
    """What an agent answers to an accepted call: its result, or that it still runs (202)."""

    body: dict[str, object]
    is_running: bool = False


class FencedCalls:
    """Every host's ledgers, the running calls' tasks, and the record of calls received."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self.inits: list[InitCall] = []
        self.connects: list[ConnectCall] = []
        self._ledgers: dict[Key, InitLedger] = {}
        self._tasks: dict[InitRecord, asyncio.Task[None]] = {}

    def ledger(self, key: Key) -> InitLedger:
        """Return the ledger of one host's init, or of one host's connect to one domain."""
        found = self._ledgers.get(key)
        if found is None:
            found = self._ledgers[key] = InitLedger()
        return found

    async def submit(
        self,
        calls: list[CallT],
        key: Key,
        fence: int,
        activation_id: str,
        make_call: Callable[[datetime], CallT],
        work: Work,
        *,
        exclusive: bool,
        wait: bool,
    ) -> Answer:
        """Accept or refuse one call, start it when it is new, and answer as the agent would.

        Raises:
            FenceRefused: ``fence`` is below the highest accepted.
            BusyRefused: (``exclusive``) another call runs under this key.
        """
        ledger = self.ledger(key)
        now = self._clock()
        try:
            record, is_new = ledger.begin(fence, activation_id, now, exclusive=exclusive)
        except FenceRefused as exc:
            calls.append(_refused(make_call(now), "stale_fence", f"fence {fence} below {exc.highest}"))
            logger.info("%s refused fence %d (highest %d)", "/".join(key), fence, exc.highest)
            raise
        except BusyRefused as exc:
            detail = f"{exc.activation_id} with fence {exc.fence} runs"
            calls.append(_refused(make_call(now), "busy", detail))
            logger.info("%s refused %s: busy, %s", "/".join(key), activation_id, detail)
            raise
        if is_new:
            call = make_call(now)
            calls.append(call)
            self._tasks[record] = asyncio.create_task(self._run(ledger, record, call, work))
        task = self._tasks.get(record)
        if task is not None and not wait:
            return Answer({"status": "running"}, is_running=True)
        if task is not None:
            # Shielded: a caller that gives up leaves the call running, as on a real host.
            await asyncio.shield(task)
        return Answer(record.result())

    async def _run(self, ledger: InitLedger, record: InitRecord, call: CallT, work: Work) -> None:
        try:
            failure = await work()
        except asyncio.CancelledError:
            now = self._clock()
            call.ended_at, call.outcome, call.reason = now, "failed", "cancelled"
            ledger.finish(record, now, False, "activation_failed", CANCELLED_DETAIL)
            raise
        finally:
            self._tasks.pop(record, None)
        now = self._clock()
        call.ended_at = now
        if failure is None:
            call.outcome = "ok"
            ledger.finish(record, now, True)
        else:
            call.outcome, call.reason = "failed", failure[0]
            ledger.finish(record, now, False, *failure)

    def status(self, key: Key, activation_id: str) -> dict[str, object] | None:
        """Return ``GET .../{activation_id}``'s body, or None when the agent has no record."""
        found = self._ledgers.get(key)
        record = found.find(activation_id) if found else None
        return None if record is None else record.status()

    def running(self, host_id: str) -> InitRecord | None:
        """Return the init running on a host now, if any."""
        found = self._ledgers.get((host_id,))
        return found.running if found else None

    def highest(self, host_id: str) -> int:
        """Return the highest init fence the host's agent has accepted (0 when none)."""
        found = self._ledgers.get((host_id,))
        return found.highest if found else 0

    async def cancel_all(self) -> None:
        """Cancel every running call (the server is stopping); their records say cancelled."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def overlaps(self) -> dict[str, list[tuple[InitCall, InitCall]]]:
        """Return, per host, the pairs of accepted init calls that ran at the same time."""
        return _grouped(self.inits, lambda c: c.host_id, find_overlaps)

    def connect_overlaps(self) -> dict[str, list[tuple[ConnectCall, ConnectCall]]]:
        """Return, per storage domain, the connect pairs two actors ran at the same time."""
        return _grouped(self.connects, lambda c: c.sd_id, find_connect_overlaps)

    def reset(self, fences: bool = False) -> None:
        """Forget recorded calls (and, with ``fences``, the highest fences accepted)."""
        self.inits.clear()
        self.connects.clear()
        if fences:
            for ledger in self._ledgers.values():
                ledger.forget_fence()


def _refused(call: CallT, outcome: Literal["stale_fence", "busy"], reason: str) -> CallT:
    call.ended_at, call.outcome, call.reason = call.started_at, outcome, reason
    return call


def _grouped(
    calls: list[CallT],
    group: Callable[[CallT], str],
    find: Callable[[list[CallT]], list[tuple[CallT, CallT]]],
) -> dict[str, list[tuple[CallT, CallT]]]:
    by_key: dict[str, list[CallT]] = {}
    for call in calls:
        by_key.setdefault(group(call), []).append(call)
    found = {key: find(group_calls) for key, group_calls in by_key.items()}
    return {key: pairs for key, pairs in found.items() if pairs}
