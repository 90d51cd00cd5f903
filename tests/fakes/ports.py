"""Fakes of the small ports services take as arguments: the clock and the enqueuer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from models.errors import BrokerUnavailable


class FixedClock:
    """A clock that moves only when told."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        self.now += timedelta(seconds=seconds)


@dataclass
class RecordingEnqueuer:
    """Keeps every activation sent; raises BrokerUnavailable while ``failing``."""

    calls: list[tuple[str, str, str, str]] = field(default_factory=list)
    failing: bool = False

    def __call__(self, activation_id: str, host_id: str, trigger: str, actor: str) -> None:
        if self.failing:
            raise BrokerUnavailable("broker down")
        self.calls.append((activation_id, host_id, trigger, actor))

    def hosts(self) -> list[str]:
        """The hosts sent, in order."""
        return [h for _, h, _, _ in self.calls]
