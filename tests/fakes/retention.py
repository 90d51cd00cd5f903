"""The retention repository in memory: the same kinds and cutoffs as ``adapters/store/retention``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from tests.fakes.memory import MemoryState, Repo

_CLOSED = ("queued", "running")


def _older(st: MemoryState, kind: str, before: datetime) -> tuple[list[Any], Callable[[Any], object]]:
    """The keys of ``kind``'s rows older than ``before`` (oldest first), and how to delete one."""
    if kind == "audit_log":
        old = [e["id"] for e in st.audit if e["at"] < before]
        return sorted(old), lambda key: st.audit.remove(next(e for e in st.audit if e["id"] == key))
    tables: dict[str, tuple[dict[Any, dict[str, Any]], str, tuple[str, ...]]] = {
        "activations": (st.activations, "ended_at", _CLOSED),
        "sd_activations": (st.sd_activations, "ended_at", _CLOSED),
        "ticks": (st.ticks, "started_at", ("running", "closing")),
        "charges": (st.charges, "at", ()),
        "vm_runs": (st.vm_runs, "received_at", ()),
    }
    table, when, keep = tables[kind]
    old = [
        k for k, r in table.items() if r[when] is not None and r[when] < before and r.get("state") not in keep
    ]
    return sorted(old), table.pop


class MemoryRetention(Repo):
    """History past its retention, kind by kind."""

    def count_older(self, conn: Any, kind: str, before: datetime) -> int:
        """Count the rows of ``kind`` a pruning with this cutoff would delete."""
        old, _ = _older(self._state(conn, plain=[kind, before]), kind, before)
        return len(old)

    def delete_batch(self, conn: Any, kind: str, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` rows of ``kind`` older than ``before``; return how many."""
        old, delete = _older(self._state(conn, plain=[kind, before, limit]), kind, before)
        for key in old[:limit]:
            delete(key)
        return len(old[:limit])
