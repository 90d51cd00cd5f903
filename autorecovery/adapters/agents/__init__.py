"""Host agent clients: the port, its HTTP adapter and an in-memory fake for unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from models.domain import Report


@dataclass(frozen=True, slots=True)
class InitResult:
    """What an agent answered to an init or a storage-domain connect call."""

    ok: bool
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A host to pull a report from."""

    host_id: str
    agent_url: str


class AgentClient(Protocol):
    """Talks agent protocol v1 to many hosts."""

    def pull_reports(self, targets: Sequence[Target], now: datetime) -> list[Report]:
        """Pull every target's report at once; an unanswered or bad one becomes an observation."""
        ...

    def get_report(self, target: Target, now: datetime) -> Report:
        """Pull one host's report; never raises for an agent failure (see ``pull_reports``)."""
        ...

    def init(self, target: Target, fence: int, activation_id: str) -> InitResult:
        """Ask the agent to initialise its host under ``fence``.

        Raises:
            StaleFence: the agent has accepted a higher fence.
            AgentUnavailable: no answer after bounded retries.
        """
        ...

    def connect_storage_domain(self, target: Target, sd_id: str, fence: int) -> InitResult:
        """Ask the agent to connect a storage domain under ``fence``."""
        ...
