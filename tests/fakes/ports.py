"""Fakes of the small ports services take as arguments: the clock and the enqueuer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from models.domain import Report
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
class RecordingCheckSender:
    """Keeps every check step sent again (the housekeeping's), with its task id."""

    calls: list[tuple[str, str, str, str, str]] = field(default_factory=list)

    def __call__(self, activation_id: str, host_id: str, trigger: str, actor: str, task_id: str) -> None:
        self.calls.append((activation_id, host_id, trigger, actor, task_id))


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


def good_report(host_id: str, at: datetime, **changes: Any) -> Report:
    """A clean report (for the unit tests' one-cluster fleet), with ``changes`` applied."""
    report = Report(
        host_id=host_id,
        reported_at=at,
        kvm=True,
        version="4.5.2",
        cpu_flags=frozenset({"vmx"}),
        networks={"mgmt": True},
        storage_domains={"sd-1": True},
        vms_running=1,
        mem_free_mb=4096,
    )
    return replace(report, **changes)
