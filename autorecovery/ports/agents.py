"""The agent client port: what services ask of a host's agent, and the values it answers.

Its implementations live in ``autorecovery/adapters/agents`` (http, and the fake for unit tests)."""

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


@dataclass(frozen=True, slots=True)
class InitStatus:
    """What a v2 agent says of one init it ran or runs (``GET /init/{activation_id}``)."""

    activation_id: str
    fence: int
    running: bool
    ok: bool | None = None
    reason: str | None = None
    detail: str | None = None

    def result(self) -> InitResult | None:
        """The init's result once it is done, else None."""
        if self.running:
            return None
        return InitResult(ok=bool(self.ok), reason=self.reason, detail=self.detail)


class AgentClient(Protocol):
    """Talks agent protocol v2 (and v1) to many hosts."""

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
            AgentBusy: another init runs on the host (v2); nothing was started.
            InitOutcomeUnknown: the call may have reached the agent but no answer was seen (read
                timeout, connection lost after sending); the init may still be running.
            AgentUnavailable: the call never reached the agent (connect failed), after bounded
                retries.
        """
        ...

    def start_init(self, target: Target, fence: int, activation_id: str) -> InitResult | None:
        """Ask a v2 agent to initialise its host, answering at once (``Prefer: respond-async``).

        Returns:
            None when the agent runs the init (202); its result if it answered with one (200).

        Raises:
            As ``init``; InitOutcomeUnknown when no answer was seen within one call's timeout.
        """
        ...

    def init_status(self, target: Target, activation_id: str) -> InitStatus | None:
        """Ask a v2 agent how an init went; None when it has no record of it (404).

        Raises:
            AgentUnavailable: no answer.
        """
        ...

    def raise_fence(self, target: Target, fence: int) -> int | None:
        """Raise the highest fence the agent accepts (v2 ``POST /fence``); return it.

        Returns None when the agent does not have the route (v1).

        Raises:
            AgentUnavailable: no answer.
        """
        ...

    def connect_storage_domain(
        self, target: Target, sd_id: str, fence: int, activation_id: str
    ) -> InitResult:
        """Ask the agent to connect a storage domain under ``fence`` (errors as ``init``)."""
        ...

    def start_connect(
        self, target: Target, sd_id: str, fence: int, activation_id: str
    ) -> InitResult | None:
        """As ``connect_storage_domain`` with ``Prefer: respond-async``: None when a v2 agent runs
        it (202); a v1 agent, which ignores the preference, answers with its result."""
        ...

    def connect_status(self, target: Target, sd_id: str, activation_id: str) -> InitStatus | None:
        """Ask a v2 agent how a storage-domain connect went; None when it has no record (404).

        Raises:
            AgentUnavailable: no answer.
        """
        ...
