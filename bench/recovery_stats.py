"""The recovery bench's arithmetic: what it observed in, figures out (pure, no I/O, no clock).

What it reads is black-box: Celery's task events (``task-received``, ``task-started``, and the
events that end a run), the simulator's record of ``POST /init`` calls, and when each host was
first seen ``up``. Task names are not trusted: a task is an activation's when its kwargs carry an
``activation_id`` (every step of an activation does, whatever the task is called).
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

#: An ``activation_id`` in the repr of a task's kwargs, as Celery's task-received event shows it.
ACTIVATION_KWARG = re.compile(r"""['"]activation_id['"]\s*:\s*['"]([^'"]+)['"]""")
#: Events that end one run of a task message.
RUN_ENDS = frozenset({"task-succeeded", "task-failed", "task-retried", "task-rejected", "task-revoked"})
#: Celery's log line for a task that succeeded: when it was logged, the task's name, its runtime.
SUCCEEDED_LINE = re.compile(
    r"^\[(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/[^\]]+\] "
    r"Task (?P<name>[\w.:-]+)\[[^\]]+\] succeeded in (?P<runtime>[\d.]+)s"
)
#: Outcomes of init calls an agent refused: nothing ran.
REFUSED_INITS = frozenset({"stale_fence", "busy"})


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One Celery task event, reduced to what the bench uses."""

    type: str
    uuid: str
    timestamp: float
    name: str | None = None
    kwargs: str | None = None

    @classmethod
    def from_celery(cls, event: Mapping[str, Any]) -> TaskEvent | None:
        """Reduce a Celery event; None for worker events and anything without a task id."""
        kind, uuid, stamp = event.get("type"), event.get("uuid"), event.get("timestamp")
        if not (isinstance(kind, str) and kind.startswith("task-") and isinstance(uuid, str)):
            return None
        if not isinstance(stamp, int | float):
            return None
        name, kwargs = event.get("name"), event.get("kwargs")
        return cls(
            kind,
            uuid,
            float(stamp),
            name if isinstance(name, str) else None,
            kwargs if isinstance(kwargs, str) else str(kwargs) if kwargs is not None else None,
        )


@dataclass(frozen=True, slots=True)
class TaskFigures:
    """Activation tasks as the worker's events show them."""

    #: Task messages (ids) of activations that a worker received.
    messages: int
    #: Activations those messages belong to.
    activations: int
    #: Runs started.
    runs: int
    #: Runs of one message beyond its first and its own retries: the same work done twice.
    duplicate_runs: int
    #: Deliveries of one message beyond its first and its retries (a re-send, a redelivery).
    extra_deliveries: int
    #: Each ended run's seconds, in the order they ended.
    run_s: tuple[float, ...]
    #: Each ended run's (start, end) wall-clock times.
    intervals: tuple[tuple[float, float], ...]
    #: The task names these messages had.
    names: frozenset[str] = frozenset()

    def busy_share(self, processes: int, start: float, end: float) -> float:
        """The share of ``processes`` slots' time in [start, end] spent running these tasks."""
        return busy_share(self.intervals, processes, start, end)

    def run_ms(self, quantile: float) -> float | None:
        """A quantile (0.5: median) of the runs' durations in milliseconds; None with no run."""
        return quantile_of([s * 1000 for s in self.run_s], quantile)


def activation_task_ids(events: Iterable[TaskEvent]) -> dict[str, str]:
    """Task id -> activation id, for every received task whose kwargs name an activation."""
    found: dict[str, str] = {}
    for event in events:
        if event.type == "task-received" and event.kwargs:
            match = ACTIVATION_KWARG.search(event.kwargs)
            if match:
                found[event.uuid] = match.group(1)
    return found


def task_figures(events: Iterable[TaskEvent]) -> TaskFigures:
    """Count the activation tasks' messages, runs, duplicate runs and deliveries; time the runs."""
    ordered = sorted(events, key=lambda e: e.timestamp)
    owners = activation_task_ids(ordered)
    by_task: dict[str, list[TaskEvent]] = defaultdict(list)
    for event in ordered:
        if event.uuid in owners:
            by_task[event.uuid].append(event)
    runs = duplicates = extra = 0
    intervals: list[tuple[float, float]] = []
    for task_events in by_task.values():
        counts = Counter(e.type for e in task_events)
        started, retried, received = counts["task-started"], counts["task-retried"], counts["task-received"]
        runs += started
        duplicates += max(0, started - 1 - retried)
        extra += max(0, received - 1 - retried)
        intervals.extend(_run_intervals(task_events))
    intervals.sort(key=lambda i: i[1])
    return TaskFigures(
        messages=len(by_task),
        activations=len({owners[t] for t in by_task}),
        runs=runs,
        duplicate_runs=duplicates,
        extra_deliveries=extra,
        run_s=tuple(end - start for start, end in intervals),
        intervals=tuple(intervals),
        names=frozenset(e.name for events in by_task.values() for e in events if e.name),
    )


def _run_intervals(task_events: list[TaskEvent]) -> list[tuple[float, float]]:
    """Pair each start of one task message with the event that ended it."""
    found: list[tuple[float, float]] = []
    started: float | None = None
    for event in task_events:
        if event.type == "task-started":
            started = event.timestamp
        elif event.type in RUN_ENDS and started is not None:
            found.append((started, event.timestamp))
            started = None
    return found


def busy_share(intervals: Iterable[tuple[float, float]], processes: int, start: float, end: float) -> float:
    """The share of ``processes`` slots' time in [start, end] covered by ``intervals`` (clipped)."""
    window = end - start
    if window <= 0 or processes <= 0:
        return 0.0
    busy = sum(max(0.0, min(b, end) - max(a, start)) for a, b in intervals)
    return busy / (processes * window)


def logged_runs(log_text: str) -> list[tuple[str, float, float]]:
    """(task name, start, end) of every task the worker's log says succeeded (local wall clock).

    Covers the tasks that send no events (the monitoring tick's batches): what else the pool
    spends its time in.
    """
    found: list[tuple[str, float, float]] = []
    for line in log_text.splitlines():
        match = SUCCEEDED_LINE.match(line)
        if match:
            end = datetime.strptime(match["at"], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append((match["name"], end - float(match["runtime"]), end))
    return found


def busy_by_name(
    runs: Iterable[tuple[str, float, float]], processes: int, start: float, end: float
) -> dict[str, float]:
    """Each task name's share of ``processes`` slots' time in [start, end]."""
    by_name: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for name, a, b in runs:
        by_name[name].append((a, b))
    shares = {name: busy_share(spans, processes, start, end) for name, spans in by_name.items()}
    return {name: share for name, share in sorted(shares.items()) if share > 0}


def quantile_of(values: list[float], quantile: float) -> float | None:
    """The ``quantile`` of ``values`` (nearest rank); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(quantile * (len(ordered) - 1))))
    return ordered[rank]


@dataclass(frozen=True, slots=True)
class InitFigures:
    """The simulator's record of ``POST /init`` calls."""

    #: Calls an agent accepted (so an init ran, or still runs).
    accepted: int
    #: Calls refused (stale fence, busy): nothing ran.
    refused: int
    #: Inits run for an activation beyond its first: the same activation's init twice.
    duplicate_inits: int
    #: Hosts whose agent ran more than one init.
    hosts_with_several: int


def init_figures(calls: Iterable[Mapping[str, Any]]) -> InitFigures:
    """Count accepted, refused and repeated inits in the simulator's call record."""
    accepted = refused = 0
    by_activation: Counter[str] = Counter()
    by_host: Counter[str] = Counter()
    for call in calls:
        if call.get("outcome") in REFUSED_INITS:
            refused += 1
            continue
        accepted += 1
        by_activation[str(call["activation_id"])] += 1
        by_host[str(call["host_id"])] += 1
    return InitFigures(
        accepted=accepted,
        refused=refused,
        duplicate_inits=sum(n - 1 for n in by_activation.values()),
        hosts_with_several=sum(1 for n in by_host.values() if n > 1),
    )


@dataclass(frozen=True, slots=True)
class Recovery:
    """When the watched hosts came up after the fault was cleared."""

    hosts: int
    up: int
    #: Seconds from the fault cleared to the last watched host up; None when some never came up.
    all_up_s: float | None
    median_s: float | None
    #: Seconds from the clear to the last host seen up (all or not), for a rate of what came up.
    last_up_s: float | None

    @property
    def per_s(self) -> float | None:
        """Hosts brought up per second, from the fault cleared to the last of them up."""
        if not self.up or not self.last_up_s:
            return None
        return self.up / self.last_up_s


def recovery(first_up: Mapping[str, float], hosts: Iterable[str], cleared_at: float) -> Recovery:
    """Summarise when each of ``hosts`` was first seen up (``first_up``: wall-clock times)."""
    watched = list(hosts)
    delays = sorted(first_up[h] - cleared_at for h in watched if h in first_up)
    last = delays[-1] if delays else None
    return Recovery(
        hosts=len(watched),
        up=len(delays),
        all_up_s=last if len(delays) == len(watched) else None,
        median_s=statistics.median(delays) if delays else None,
        last_up_s=last,
    )


@dataclass(frozen=True, slots=True)
class TickFigures:
    """The monitoring ticks that ended in a window, from their published summaries."""

    closed: int
    skipped: int
    #: The longest time between two closed ticks, or from the window's start to the first.
    longest_gap_s: float | None


def tick_figures(summaries: Iterable[Mapping[str, Any]], start: float, end: float) -> TickFigures:
    """Count the ticks that closed or were skipped in [start, end] and the longest gap between closes."""
    closed: list[float] = []
    skipped = 0
    for summary in summaries:
        at = summary.get("finished_at")
        if not isinstance(at, int | float) or not start <= at <= end:
            continue
        if summary.get("skipped") is None:
            closed.append(float(at))
        else:
            skipped += 1
    closed.sort()
    gaps = [b - a for a, b in zip([start, *closed], closed, strict=False)]
    return TickFigures(len(closed), skipped, max(gaps) if gaps else None)


def ratio(value: float | None, baseline: float | None) -> float | None:
    """``value / baseline``, or None when either is missing or the baseline is zero."""
    if value is None or not baseline:
        return None
    return value / baseline
