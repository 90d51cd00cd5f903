"""Agent protocol v2's state machine: fences, one init at a time, idempotent retries, results.

Nothing here runs an init, talks HTTP or touches libvirt. An agent calls ``begin`` before any
side effect (it persists the accepted fence and the running record first), runs the work its own
way (a thread, an asyncio task), then calls ``finish``. Persistence is pluggable: ``DiskStore``
for the real agent, ``MemoryStore`` for a simulator (see ``hostagent.persist``).

Scopes: ``init`` for host inits (``POST /init`` and ``POST /fence``), ``storage-domain/<id>`` for
storage-domain connects, each with its own highest fence (the product fences a storage domain
apart from its hosts). Whatever the scope, one operation at a time runs on the host.

Reuse (the fleet simulator, one state per simulated host, nothing on disk)::

    state = ProtocolState(MemoryStore(), clock)
    try:
        record, is_new = state.begin(INIT_SCOPE, fence, activation_id)
    except StaleFence as exc:   # 409 {"error": "stale_fence", "highest": exc.highest}
    except InitBusy as exc:     # 409 exc.body()
    if is_new:                  # run it (asyncio task, thread), then:
        state.finish(record, ok, reason, detail)
    # answers: record.result_body(), state.lookup(scope, id).status_body(),
    # report["init"]: state.running().running_body(); POST /fence: state.raise_fence(n)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from hostagent.persist import NEW_STATE_ADVICE, StateStore
from models.errors import AgentBusy, InvalidInput, PermanentError, StaleFence
from models.fencing import MAX_FENCE

INIT_SCOPE = "init"
#: Records of ended operations kept (on disk for the agent) for the status routes.
DEFAULT_KEEP_RESULTS = 256
INTERRUPTED = "the agent stopped while this operation ran; its effect on the host is unknown"


def connect_scope(sd_id: str) -> str:
    """The scope of a storage domain's connect operations."""
    return f"storage-domain/{sd_id}"


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class InitRecord:
    """One init (or connect) the agent accepted: running until it has an ``ended_at``."""

    scope: str
    activation_id: str
    fence: int
    started_at: datetime
    ended_at: datetime | None = None
    ok: bool | None = None
    reason: str | None = None
    detail: str | None = None

    @property
    def is_running(self) -> bool:
        """True until the operation ended."""
        return self.ended_at is None

    def result_body(self) -> dict[str, Any]:
        """The answer to ``POST /init`` once done: ``{"ok": true}`` or ok false with the reason."""
        if self.ok:
            return {"ok": True}
        return {"ok": False, "reason": self.reason or "general", "detail": self.detail}

    def status_body(self) -> dict[str, Any]:
        """The answer to ``GET /init/{activation_id}``."""
        return {
            "activation_id": self.activation_id,
            "fence": self.fence,
            "status": "running" if self.is_running else "done",
            "ok": self.ok,
            "reason": self.reason,
            "detail": self.detail,
            "started_at": _time(self.started_at),
            "ended_at": _time(self.ended_at),
        }

    def running_body(self) -> dict[str, Any]:
        """The report's ``init`` field (and a busy answer's holder)."""
        return {
            "activation_id": self.activation_id,
            "fence": self.fence,
            "started_at": _time(self.started_at),
        }

    def to_dict(self) -> dict[str, Any]:
        """Serialise for the state store."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = None if self.ended_at is None else self.ended_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InitRecord:
        """Read back what ``to_dict`` wrote."""
        ended = data.get("ended_at")
        return cls(
            scope=str(data["scope"]),
            activation_id=str(data["activation_id"]),
            fence=int(data["fence"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            ended_at=None if ended is None else datetime.fromisoformat(ended),
            ok=data.get("ok"),
            reason=data.get("reason"),
            detail=data.get("detail"),
        )


class InitBusy(AgentBusy):
    """Another operation runs on the host; nothing was started (409 busy)."""

    def __init__(self, holder: InitRecord) -> None:
        super().__init__(
            f"{holder.scope} {holder.activation_id} (fence {holder.fence}) is running",
            holder.activation_id,
            holder.fence,
        )
        self.holder = holder

    def body(self) -> dict[str, Any]:
        """The 409 answer's body."""
        return {"error": "busy", **self.holder.running_body()}


class ActivationReused(PermanentError):
    """An activation id already names an operation with another fence (409 activation_id_reused).

    An activation id names one operation: the product sends it again only with the same fence
    (a retry). Another fence under the same id is refused, so the first run's record is never
    overwritten and ``GET /init/{activation_id}`` keeps telling how that run ended.
    """

    def __init__(self, known: InitRecord) -> None:
        super().__init__(f"{known.scope} {known.activation_id} already ran with fence {known.fence}")
        self.known = known

    def body(self) -> dict[str, Any]:
        """The 409 answer's body."""
        return {"error": "activation_id_reused", **self.known.running_body()}


def read_document(document: object) -> tuple[str, dict[str, int], list[InitRecord]]:
    """The ``state_id``, fences and records of a state document, checked strictly.

    ``{}``, a missing ``state_id``, a negative, boolean or out-of-range fence, a wrong type: the
    agent refuses to serve rather than start at fence 0 (SPEC Appendix B, "Agent state").

    Raises:
        InvalidInput: ``state_dir``, naming the entry (``state_id``, ``fences.init``, ``records[2]``).
    """
    if not isinstance(document, dict):
        raise _mistyped("document", "a JSON object")
    state_id = document.get("state_id")
    if not isinstance(state_id, str) or not 1 <= len(state_id) <= 200:
        raise _mistyped("state_id", "a string (the agent state's id)")
    fences = document.get("fences")
    if not isinstance(fences, dict):
        raise _mistyped("fences", "an object of scope to fence")
    for scope, fence in fences.items():
        if isinstance(fence, bool) or not isinstance(fence, int) or not 0 <= fence <= MAX_FENCE:
            raise _mistyped(f"fences.{scope}", "an integer 0 … 2⁶³−1")
    rows = document.get("records")
    if not isinstance(rows, list):
        raise _mistyped("records", "a list")
    return state_id, {str(k): int(v) for k, v in fences.items()}, [_record(i, r) for i, r in enumerate(rows)]


def _record(i: int, row: object) -> InitRecord:
    """One saved init record, or InvalidInput naming ``records[i]``."""
    try:
        if not isinstance(row, dict) or isinstance(row.get("fence"), bool):
            raise TypeError("not an object")
        record = InitRecord.from_dict(row)
        if record.started_at.tzinfo is None or not isinstance(row["scope"], str):
            raise TypeError("no time zone")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _mistyped(f"records[{i}]", f"an init record ({type(exc).__name__}: {exc})") from None
    return record


def _mistyped(entry: str, expected: str) -> InvalidInput:
    return InvalidInput("state_dir", f"the state file's {entry} must be {expected}; {NEW_STATE_ADVICE}")


class ProtocolState:
    """Accepts or refuses operations by fence and by what runs; remembers recent results.

    Thread-safe. Every change is saved to the store before the call returns, so an accepted
    fence is durable before the caller starts any side effect.
    """

    def __init__(
        self, store: StateStore, clock: Callable[[], datetime], keep_results: int = DEFAULT_KEEP_RESULTS
    ) -> None:
        self._store = store
        self._clock = clock
        self._keep = keep_results
        self._lock = threading.Lock()
        self.state_id, self._fences, records = read_document(store.load())
        self._records = {(r.scope, r.activation_id): r for r in records}
        self._close_interrupted()

    def _close_interrupted(self) -> None:
        """End the records a previous process left running: it died with them."""
        now = self._clock()
        stale = [key for key, r in self._records.items() if r.is_running]
        for key in stale:
            record = self._records[key]
            self._records[key] = replace(record, ended_at=now, ok=False, reason="general", detail=INTERRUPTED)
        if stale:
            self._save(self._fences, self._records)

    def _save(self, fences: dict[str, int], records: dict[tuple[str, str], InitRecord]) -> None:
        self._store.save(
            {"state_id": self.state_id, "fences": fences, "records": [r.to_dict() for r in records.values()]}
        )

    def highest(self, scope: str = INIT_SCOPE) -> int:
        """The highest fence accepted in ``scope`` (0 when none)."""
        with self._lock:
            return self._fences.get(scope, 0)

    def agent_body(self) -> dict[str, Any]:
        """The report's ``agent`` field: which state this is, and its highest host fence."""
        return {"state_id": self.state_id, "highest_fence": self.highest()}

    def running(self) -> InitRecord | None:
        """The operation running on the host, if any."""
        with self._lock:
            return self._running()

    def _running(self) -> InitRecord | None:
        return next((r for r in self._records.values() if r.is_running), None)

    def lookup(self, scope: str, activation_id: str) -> InitRecord | None:
        """The record of ``activation_id`` in ``scope``, or None when none is kept."""
        with self._lock:
            return self._records.get((scope, activation_id))

    def raise_fence(self, fence: int, scope: str = INIT_SCOPE) -> int:
        """Raise the highest fence of ``scope`` to ``fence`` (never lower it); return the highest."""
        with self._lock:
            highest = self._fences.get(scope, 0)
            if fence > highest:
                fences = {**self._fences, scope: fence}
                self._save(fences, self._records)
                self._fences, highest = fences, fence
            return highest

    def begin(self, scope: str, fence: int, activation_id: str) -> tuple[InitRecord, bool]:
        """Accept an operation, or find the one it repeats; return (record, is_new).

        The same ``(fence, activation_id)`` in a scope is the same operation, running or ended:
        its record comes back with ``is_new`` false and nothing new runs.

        Raises:
            StaleFence: ``fence`` is below the highest accepted in ``scope``.
            InitBusy: another operation runs on the host.
            ActivationReused: ``activation_id`` already names an operation with another fence.
            OSError: the state could not be saved (nothing was accepted).
        """
        with self._lock:
            key = (scope, activation_id)
            known = self._records.get(key)
            if known is not None and known.fence == fence:
                return known, False
            if known is not None:
                raise ActivationReused(known)
            highest = self._fences.get(scope, 0)
            if fence < highest:
                raise StaleFence(f"fence {fence} is below the highest accepted ({highest})", highest)
            holder = self._running()
            if holder is not None:
                raise InitBusy(holder)
            record = InitRecord(scope, activation_id, fence, self._clock())
            records = {k: r for k, r in self._records.items() if k != key}
            records[key] = record
            fences = {**self._fences, scope: max(fence, highest)}
            self._save(fences, records)  # durable before the caller's first side effect
            self._fences, self._records = fences, records
            return record, True

    def finish(
        self, record: InitRecord, ok: bool, reason: str | None = None, detail: str | None = None
    ) -> InitRecord:
        """Record how a running operation ended; drop the oldest ended records past the bound."""
        with self._lock:
            ended = replace(
                record, ended_at=self._clock(), ok=ok, reason=None if ok else reason, detail=detail
            )
            records = dict(self._records)
            records[(record.scope, record.activation_id)] = ended
            done = [k for k, r in records.items() if not r.is_running]
            for key in done[: max(0, len(done) - self._keep)]:
                del records[key]
            # Memory first: a failed save must not leave the host busy forever (a restart then
            # reads the record as interrupted, which is what it would be).
            self._records = records
            self._save(self._fences, records)
            return ended
