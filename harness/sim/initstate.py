"""Agent protocol v2 bookkeeping for one fenced call kind of one agent (no I/O, no clock).

One ``InitLedger`` per host's init, and one per host and storage domain for connect: the highest
fence accepted, the init running now, and the recent results by activation id. It decides what a
new call gets (stale fence, busy, the same init again, or a new one); running the init is the
caller's job. Kept apart so that it can be swapped for the production agent's state machine.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from harness.sim.record import format_time
from models.errors import AgentBusy, StaleFence

__all__ = ["BusyRefused", "FenceRefused", "InitLedger", "InitRecord"]

#: Results kept per ledger, so that a retry or a status request still finds a recent init.
KEEP_RESULTS = 256


class FenceRefused(StaleFence):
    """An agent call carried a fence lower than the highest the agent has accepted."""

    def __init__(self, highest: int) -> None:
        super().__init__(f"stale fence; highest accepted is {highest}")
        self.highest = highest


@dataclass(slots=True, eq=False)
class InitRecord:
    """One init (or connect) an agent accepted; ``ended_at`` is None while it runs."""

    activation_id: str
    fence: int
    started_at: datetime
    ended_at: datetime | None = None
    ok: bool | None = None
    reason: str | None = None
    detail: str | None = None

    @property
    def is_running(self) -> bool:
        """True until the init has ended."""
        return self.ended_at is None

    def holder(self) -> dict[str, object]:
        """Render the report's ``init`` field (and a busy refusal's holder)."""
        return {
            "activation_id": self.activation_id,
            "fence": self.fence,
            "started_at": format_time(self.started_at),
        }

    def result(self) -> dict[str, object]:
        """Render the v1 answer of a finished init."""
        if self.ok:
            return {"ok": True}
        return {"ok": False, "reason": self.reason, "detail": self.detail}

    def status(self) -> dict[str, object]:
        """Render ``GET /init/{activation_id}``."""
        return {
            **self.holder(),
            "status": "running" if self.is_running else "done",
            "ok": self.ok,
            "reason": self.reason,
            "detail": self.detail,
            "ended_at": None if self.ended_at is None else format_time(self.ended_at),
        }


class BusyRefused(AgentBusy):
    """A v2 agent refused an init because another one runs; nothing was started."""

    def __init__(self, running: InitRecord) -> None:
        super().__init__(f"init {running.activation_id} runs", running.activation_id, running.fence)
        self.running = running


class InitLedger:
    """What one agent remembers about one kind of fenced call.

    Args:
        keep: how many finished results to remember for retries and status requests.
    """

    def __init__(self, keep: int = KEEP_RESULTS) -> None:
        self.highest = 0
        self._keep = keep
        self._running: list[InitRecord] = []
        self._results: OrderedDict[str, InitRecord] = OrderedDict()

    @property
    def running(self) -> InitRecord | None:
        """The init running now (the oldest one, if a v1 agent runs several)."""
        return self._running[0] if self._running else None

    def find(self, activation_id: str) -> InitRecord | None:
        """Return the init known under ``activation_id``, running or done, or None."""
        return self._results.get(activation_id)

    def begin(
        self, fence: int, activation_id: str, now: datetime, exclusive: bool = True
    ) -> tuple[InitRecord, bool]:
        """Decide what a call gets; return its record and whether a new init must run.

        ``exclusive`` is protocol v2: busy refusal and idempotence by (fence, activation_id).
        A v1 agent (not exclusive) runs whatever it is sent with a fence high enough.

        Raises:
            FenceRefused: ``fence`` is below the highest accepted.
            BusyRefused: (v2) another init runs now.
        """
        if exclusive:
            known = self._results.get(activation_id)
            if known is not None and known.fence == fence:
                return known, False
        if fence < self.highest:
            raise FenceRefused(self.highest)
        if exclusive and self._running:
            raise BusyRefused(self._running[0])
        self.highest = fence
        record = InitRecord(activation_id, fence, now)
        self._running.append(record)
        self._results[activation_id] = record
        self._results.move_to_end(activation_id)
        while len(self._results) > self._keep:
            self._results.popitem(last=False)
        return record, True

    def finish(
        self,
        record: InitRecord,
        now: datetime,
        ok: bool,
        reason: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record how an init started by ``begin`` ended."""
        record.ended_at, record.ok, record.reason, record.detail = now, ok, reason, detail
        if record in self._running:
            self._running.remove(record)

    def raise_fence(self, fence: int) -> int:
        """Raise the highest accepted fence to ``fence`` (never lower it); return the highest."""
        self.highest = max(self.highest, fence)
        return self.highest

    def forget_fence(self) -> None:
        """Forget the highest accepted fence (a test resetting the simulator)."""
        self.highest = 0
