"""The ticks repository in memory, with the same guards as ``autorecovery.adapters.store.ticks``.

Its clock is the memory database's (PostgreSQL's ``clock_timestamp()``): see ``MemoryDatabase.clock``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from autorecovery.adapters.store.ticks import _refusal
from autorecovery.ports.rows import BatchDone, BatchStart, PushedCut, TickClaim
from tests.fakes.memory import Repo


class MemoryTicks(Repo):
    """Ticks and their finished batches."""

    def _now(self) -> datetime:
        return self._db.clock()

    def _ticks(self, conn: Any) -> dict[str, dict[str, Any]]:
        return self._state(conn).ticks

    def claim(
        self,
        conn: Any,
        tick_id: str,
        *,
        batch_size: int,
        min_spacing_s: float,
        deadline_s: float,
        pushed: PushedCut | None = None,
    ) -> TickClaim:
        """Claim a tick unless a duplicate or one still running; take over from one past its deadline."""
        ticks = self._ticks(conn)
        now = self._now()
        took_over = None
        if ticks:
            last = max(ticks.values(), key=lambda t: t["started_at"])
            view = {
                "id": last["id"],
                "state": last["state"],
                "age_s": (now - last["started_at"]).total_seconds(),
            }
            refused = _refusal(view, min_spacing_s, deadline_s)
            if refused is not None:
                return TickClaim(None, refused=refused)
            if last["state"] in ("running", "closing"):
                took_over = last["id"]
                self.abandon(conn, took_over, f"taken over by tick {tick_id}")
        bounds = _cut(self._state(conn), batch_size, pushed)
        ticks[tick_id] = {
            "id": tick_id,
            "state": "running",
            "batches": len(bounds),
            "started_at": now,
            "ended_at": None,
            "detail": None,
            "summary": None,
            "done": {},
        }
        return TickClaim(tick_id, took_over=took_over, bounds=bounds)

    def abandon(self, conn: Any, tick_id: str, detail: str) -> bool:
        """Mark an unfinished tick abandoned."""
        tick = self._ticks(conn).get(tick_id)
        if tick is None or tick["state"] not in ("running", "closing"):
            return False
        tick.update(state="abandoned", ended_at=self._now(), detail=detail)
        return True

    def batch_refusal(self, conn: Any, tick_id: str, idx: int) -> str | None:
        """Why a batch must not run, else None."""
        tick = self._ticks(conn).get(tick_id)
        if tick is None:
            return f"tick {tick_id} is unknown"
        if idx in tick["done"]:
            return f"batch {idx} of tick {tick_id} already ran"
        if tick["state"] != "running":
            return f"tick {tick_id} is {tick['state']}"
        return None

    def keep_context(self, conn: Any, tick_id: str, context: dict[str, Any], key: str) -> None:
        """Keep the cluster context a tick's batches evaluate against, and its key."""
        tick = self._ticks(conn).get(tick_id)
        if tick is not None:
            tick.update(context=copy.deepcopy(context), context_key=key)

    def batch_start(
        self, conn: Any, tick_id: str, idx: int, *, with_context: bool
    ) -> Callable[[], BatchStart]:
        """``batch_refusal`` and the tick's context at once."""
        refused = self.batch_refusal(conn, tick_id, idx)
        if refused is not None:
            start = BatchStart(refused)
        else:
            tick = self._ticks(conn)[tick_id]
            context = copy.deepcopy(tick.get("context")) if with_context else None
            start = BatchStart(None, tick.get("context_key"), context)
        return lambda: start

    def queue_finish_batch(
        self, conn: Any, tick_id: str, idx: int, summary: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> Callable[[], BatchDone]:
        """``finish_batch``, read later."""
        done = self.finish_batch(conn, tick_id, idx, summary, candidates)
        return lambda: done

    def hold_running(self, conn: Any, tick_id: str) -> bool:
        """True while the tick is running (the memory database runs one transaction at a time)."""
        tick = self._ticks(conn).get(tick_id)
        return tick is not None and tick["state"] == "running"

    def finish_batch(
        self, conn: Any, tick_id: str, idx: int, summary: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> BatchDone:
        """Record a batch; the one that completes a running tick moves it to closing."""
        tick = self._ticks(conn).get(tick_id)
        if tick is None or tick["state"] != "running" or idx in tick["done"]:
            return BatchDone(recorded=False, closes=False)
        tick["done"][idx] = {
            "idx": idx,
            "summary": copy.deepcopy(summary),
            "candidates": copy.deepcopy(candidates),
        }
        if len(tick["done"]) < tick["batches"]:
            return BatchDone(recorded=True, closes=False)
        tick["state"] = "closing"
        return BatchDone(recorded=True, closes=True)

    def start_closing(self, conn: Any, tick_id: str) -> bool:
        """Move a tick with no batch straight to closing."""
        tick = self._ticks(conn).get(tick_id)
        if tick is None or tick["state"] != "running" or tick["batches"] != 0:
            return False
        tick["state"] = "closing"
        return True

    def batch_results(self, conn: Any, tick_id: str) -> list[dict[str, Any]]:
        """Every finished batch of a tick, in order."""
        tick = self._ticks(conn).get(tick_id)
        return [] if tick is None else [copy.deepcopy(tick["done"][i]) for i in sorted(tick["done"])]

    def close(self, conn: Any, tick_id: str, summary: dict[str, Any]) -> float | None:
        """Record a closing tick as done; return its duration."""
        tick = self._ticks(conn).get(tick_id)
        if tick is None or tick["state"] != "closing":
            return None
        tick.update(state="done", ended_at=self._now(), summary=copy.deepcopy(summary))
        return float((tick["ended_at"] - tick["started_at"]).total_seconds())

    def note(self, conn: Any, tick_id: str, summary: dict[str, Any]) -> None:
        """Keep the coordinator's part of the summary."""
        tick = self._ticks(conn).get(tick_id)
        if tick is not None:
            tick["summary"] = copy.deepcopy(summary)

    def get(self, conn: Any, tick_id: str) -> dict[str, Any] | None:
        """One tick's row (without its batches)."""
        tick = self._ticks(conn).get(tick_id)
        return None if tick is None else {k: copy.deepcopy(v) for k, v in tick.items() if k != "done"}

    def claim_housekeeping(self, conn: Any, holder: str, lease_s: float) -> bool:
        """Take the housekeeping lease unless another run holds it."""
        lease = self._state(conn).housekeeping
        now = self._now()
        if lease["until"] is not None and lease["until"] > now:
            return False
        lease.update(holder=holder, until=now + timedelta(seconds=lease_s))
        return True

    def release_housekeeping(self, conn: Any, holder: str) -> bool:
        """Give the lease back if this holder still has it."""
        lease = self._state(conn).housekeeping
        if lease["holder"] != holder:
            return False
        lease["until"] = None
        return True


def _cut(st: Any, batch_size: int, pushed: PushedCut | None) -> tuple[str, ...]:
    """The first host of each batch, as ``ticks._CUT`` cuts them (a host that pushed weighs less)."""
    pushed_size = batch_size if pushed is None else pushed.size
    block = batch_size * pushed_size
    bounds: list[str] = []
    upto = 0
    for host_id in sorted(st.hosts):
        report = st.reports.get(host_id)
        is_pushed = (
            pushed is not None
            and report is not None
            and report["source"] == "push"
            and pushed.after <= report["reported_at"] <= pushed.before
        )
        weight = batch_size if is_pushed else pushed_size
        upto += weight
        if upto == weight or (upto - 1) // block != (upto - weight - 1) // block:
            bounds.append(host_id)
    return tuple(bounds)
