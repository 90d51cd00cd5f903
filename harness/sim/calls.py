"""Run the simulator's fenced agent calls (init, storage-domain connect) and keep their record.

Each accepted call runs as its own task, so that it goes on after its caller gives up, as an
init on a real host does: the record then shows it running, and a later init beside it is an
overlap. Protocol v2 decisions (stale fence, busy, the same init again, bounded results) come
from the production agent's state machine, ``hostagent.protocol.ProtocolState``, kept in memory:
one per host for its inits, and one per host and storage domain for its connects (docs/agent.md:
one connect of a domain at a time on a host, beside its init). This module only runs what it
accepts and records every call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, TypeVar

from harness.sim.record import ConnectCall, InitCall, find_connect_overlaps, find_overlaps
from hostagent.persist import MemoryStore
from hostagent.protocol import INIT_SCOPE, InitBusy, InitRecord, ProtocolState, connect_scope
from models.errors import StaleFence

logger = logging.getLogger(__name__)

#: What a call does once accepted: None when it succeeded, else (reason, detail).
Work = Callable[[], Awaitable[tuple[str, str] | None]]
#: A state's key: (host_id,) for init, (host_id, sd_id) for a storage domain's connect.
Key = tuple[str, ...]
CallT = TypeVar("CallT", InitCall, ConnectCall)

CANCELLED_DETAIL = "the simulator stopped during the call"
#: Ended calls each state keeps for retries and status requests. Fewer than the real agent's:
#: the state saves every record on each change, and the product only asks about a host's last
#: few inits (one runs at a time), while a simulated host may be initialised all day long.
KEEP_RESULTS = 32


@dataclass(frozen=True, slots=True)
class Answer:
    """What an agent answers to an accepted call: its result, or that it still runs (202)."""

    body: dict[str, object]
    is_running: bool = False


def _scope(key: Key) -> str:
    return INIT_SCOPE if len(key) == 1 else connect_scope(key[1])


class FencedCalls:
    """Every host's protocol states, the running calls' tasks, and the record of calls received."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self.inits: list[InitCall] = []
        self.connects: list[ConnectCall] = []
        self._states: dict[Key, ProtocolState] = {}
        #: v2 calls running, by key and activation id: a retry waits for the same task.
        self._running: dict[tuple[Key, str], asyncio.Task[InitRecord]] = {}
        self._tasks: set[asyncio.Task[InitRecord]] = set()

    def state(self, key: Key) -> ProtocolState:
        """Return the protocol state of one host's init, or of one host's connect to one domain."""
        found = self._states.get(key)
        if found is None:
            found = self._states[key] = ProtocolState(MemoryStore(), self._clock, KEEP_RESULTS)
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

        ``exclusive`` is protocol v2 (busy refusal, idempotence by (fence, activation_id));
        a v1 agent runs whatever it is sent with a fence high enough, even beside another.

        Raises:
            StaleFence: ``fence`` is below the highest accepted.
            InitBusy: (``exclusive``) another call runs under this key.
        """
        state, now = self.state(key), self._clock()
        try:
            record, is_new = self._begin(state, _scope(key), fence, activation_id, exclusive)
        except StaleFence as exc:
            calls.append(_refused(make_call(now), "stale_fence", f"fence {fence} below {exc.highest}"))
            logger.info("%s refused fence %d (highest %s)", "/".join(key), fence, exc.highest)
            raise
        except InitBusy as exc:
            detail = f"{exc.activation_id} with fence {exc.fence} runs"
            calls.append(_refused(make_call(now), "busy", detail))
            logger.info("%s refused %s: busy, %s", "/".join(key), activation_id, detail)
            raise
        task: asyncio.Task[InitRecord] | None = None
        if is_new:
            call = make_call(now)
            calls.append(call)
            task = self._start(state if exclusive else None, record, call, work)
            if exclusive:
                self._running[(key, activation_id)] = task
        elif record.is_running:
            task = self._running.get((key, activation_id))
        if record.is_running and (task is None or not wait):
            return Answer({"status": "running"}, is_running=True)
        if task is not None:
            # Shielded: a caller that gives up leaves the call running, as on a real host.
            record = await asyncio.shield(task)
        return Answer(record.result_body())

    def _begin(
        self, state: ProtocolState, scope: str, fence: int, activation_id: str, exclusive: bool
    ) -> tuple[InitRecord, bool]:
        if exclusive:
            return state.begin(scope, fence, activation_id)
        # v1: only the fence is checked (no await in between: the event loop makes it atomic).
        highest = state.highest(scope)
        if fence < highest:
            raise StaleFence(f"fence {fence} is below the highest accepted ({highest})", highest)
        state.raise_fence(fence, scope)
        return InitRecord(scope, activation_id, fence, self._clock()), True

    def _start(
        self, state: ProtocolState | None, record: InitRecord, call: CallT, work: Work
    ) -> asyncio.Task[InitRecord]:
        task = asyncio.create_task(self._run(state, record, call, work))
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._ended(done, state, record, call))
        return task

    def _ended(
        self, task: asyncio.Task[InitRecord], state: ProtocolState | None, record: InitRecord, call: CallT
    ) -> None:
        self._tasks.discard(task)
        for key in [k for k, t in self._running.items() if t is task]:
            del self._running[key]
        # Here rather than in _run: a task cancelled before its first step never runs _run.
        if task.cancelled():
            call.ended_at, call.outcome, call.reason = self._clock(), "failed", "cancelled"
            _finish(state, record, call.ended_at, False, "activation_failed", CANCELLED_DETAIL)

    async def _run(
        self, state: ProtocolState | None, record: InitRecord, call: CallT, work: Work
    ) -> InitRecord:
        """Run an accepted call; end its record (in ``state`` for v2) and return it ended."""
        failure = await work()
        call.ended_at = self._clock()
        if failure is None:
            call.outcome = "ok"
            return _finish(state, record, call.ended_at, True)
        call.outcome, call.reason = "failed", failure[0]
        return _finish(state, record, call.ended_at, False, *failure)

    def status(self, key: Key, activation_id: str) -> dict[str, object] | None:
        """Return ``GET .../{activation_id}``'s body, or None when the agent has no record."""
        found = self._states.get(key)
        record = found.lookup(_scope(key), activation_id) if found else None
        return None if record is None else record.status_body()

    def running(self, host_id: str) -> InitRecord | None:
        """Return the (v2) init running on a host now, if any."""
        found = self._states.get((host_id,))
        return found.running() if found else None

    def highest(self, host_id: str) -> int:
        """Return the highest init fence the host's agent has accepted (0 when none)."""
        found = self._states.get((host_id,))
        return found.highest() if found else 0

    def agent_body(self, host_id: str) -> dict[str, object]:
        """The report's ``agent`` field (v2): the host's agent state (created with the host's first
        report or call, kept while the simulator runs) and its highest init fence."""
        return self.state((host_id,)).agent_body()

    def raise_fence(self, host_id: str, fence: int) -> int:
        """Raise the highest init fence of a host's agent (never lower it); return the highest."""
        return self.state((host_id,)).raise_fence(fence)

    async def cancel_all(self) -> None:
        """Cancel every running call (the server is stopping); their records say cancelled."""
        tasks = list(self._tasks)
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
        """Forget recorded calls; with ``fences``, every agent's state too (fences and results).

        A fence never lowers in an agent's state, so forgetting fences starts each agent afresh,
        as a real agent whose state file was removed: calls still running go on, unrecorded.
        """
        self.inits.clear()
        self.connects.clear()
        if fences:
            self._states.clear()
            self._running.clear()


def _finish(
    state: ProtocolState | None,
    record: InitRecord,
    now: datetime,
    ok: bool,
    reason: str | None = None,
    detail: str | None = None,
) -> InitRecord:
    if state is not None:
        return state.finish(record, ok, reason, detail)
    # A v1 call is in no state (no status route, no idempotence): end its record alone.
    return replace(record, ended_at=now, ok=ok, reason=None if ok else reason, detail=detail)


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
