"""The simulator's record of agent calls (init, storage-domain connect) and their overlaps."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, TypeVar

Outcome = Literal["ok", "failed", "stale_fence", "busy"]
#: Outcomes of calls an agent refused: nothing ran, so they never overlap.
REFUSED: frozenset[str] = frozenset({"stale_fence", "busy"})


def format_time(moment: datetime) -> str:
    """Format an aware UTC datetime as RFC 3339 with a ``Z`` suffix."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(slots=True)
class InitCall:
    """One ``POST /init`` an agent received; ``ended_at`` and ``outcome`` are None while running."""

    host_id: str
    fence: int
    activation_id: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    faulted: bool = False
    #: The host's last reports served before this init: (reported_at, problem or None).
    reports_before: list[tuple[datetime, str | None]] = field(default_factory=list)

    @property
    def is_accepted(self) -> bool:
        """True when the call was accepted, so it ran (or is running) an init."""
        return self.outcome not in REFUSED

    def to_dict(self) -> dict[str, object]:
        """Render the call as JSON-ready data."""
        return {
            "host_id": self.host_id,
            "fence": self.fence,
            "activation_id": self.activation_id,
            "started_at": format_time(self.started_at),
            "ended_at": None if self.ended_at is None else format_time(self.ended_at),
            "outcome": self.outcome,
            "reason": self.reason,
            "faulted": self.faulted,
            "reports_before": [{"at": format_time(at), "problem": p} for at, p in self.reports_before],
        }


@dataclass(slots=True)
class ConnectCall:
    """One ``POST /storage-domains/{sd}/connect`` an agent received."""

    host_id: str
    sd_id: str
    fence: int
    started_at: datetime
    ended_at: datetime | None = None
    outcome: Outcome | None = None
    reason: str | None = None
    activation_id: str | None = None

    @property
    def is_accepted(self) -> bool:
        """True when the call was accepted, so it ran (or is running) a connect."""
        return self.outcome not in REFUSED

    def to_dict(self) -> dict[str, object]:
        """Render the call as JSON-ready data."""
        return {
            "host_id": self.host_id,
            "sd_id": self.sd_id,
            "fence": self.fence,
            "started_at": format_time(self.started_at),
            "ended_at": None if self.ended_at is None else format_time(self.ended_at),
            "outcome": self.outcome,
            "reason": self.reason,
            "activation_id": self.activation_id,
        }


class _Interval(Protocol):
    @property
    def started_at(self) -> datetime: ...

    @property
    def ended_at(self) -> datetime | None: ...

    @property
    def is_accepted(self) -> bool: ...


CallT = TypeVar("CallT", bound=_Interval)


def _intersects(first: _Interval, second: _Interval) -> bool:
    # Touching ends (one call ends exactly when the next starts) are sequential, not overlapping.
    first_open = first.ended_at is None or second.started_at < first.ended_at
    second_open = second.ended_at is None or first.started_at < second.ended_at
    return first_open and second_open


def find_overlaps(calls: Iterable[CallT]) -> list[tuple[CallT, CallT]]:
    """Return the pairs of accepted calls whose [started_at, ended_at] intervals intersect.

    A call still running (``ended_at`` None) is open-ended. Refused calls never overlap.
    """
    ordered = sorted((c for c in calls if c.is_accepted), key=lambda c: c.started_at)
    pairs: list[tuple[CallT, CallT]] = []
    active: list[CallT] = []
    for call in ordered:
        active = [a for a in active if a.ended_at is None or a.ended_at > call.started_at]
        pairs.extend((a, call) for a in active if _intersects(a, call))
        active.append(call)
    return pairs


def find_connect_overlaps(calls: Iterable[ConnectCall]) -> list[tuple[ConnectCall, ConnectCall]]:
    """Return intersecting connect pairs on one storage domain that two actors made.

    One activation may connect several hosts to a domain at once with the same fence; that is
    not an overlap. Two different fences at once, or two calls on one host, are.
    """
    return [(a, b) for a, b in find_overlaps(calls) if a.fence != b.fence or a.host_id == b.host_id]
