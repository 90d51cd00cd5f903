"""An in-memory agent client for unit tests: scripted reports and init answers, every call kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from autorecovery.adapters.agents import InitResult, InitStatus, Target
from models.domain import Report
from models.errors import AgentUnavailable, StaleFence
from models.report import unreachable_report


@dataclass
class FakeAgentClient:
    """Answers from dictionaries; a host with no report is silent."""

    reports: dict[str, Report] = field(default_factory=dict)
    init_results: dict[str, InitResult] = field(default_factory=dict)
    unavailable: set[str] = field(default_factory=set)
    highest_fence: dict[str, int] = field(default_factory=dict)
    init_calls: list[tuple[str, int, str]] = field(default_factory=list)
    statuses: dict[str, InitStatus] = field(default_factory=dict)
    fence_calls: list[tuple[str, int]] = field(default_factory=list)
    connect_results: dict[str, InitResult] = field(default_factory=dict)
    #: An init to this host is sent (recorded) and then raises this (InitOutcomeUnknown, AgentBusy).
    init_errors: dict[str, Exception] = field(default_factory=dict)
    #: Successive answers of ``init_status`` per activation id, before ``statuses`` answers.
    status_script: dict[str, list[InitStatus | None]] = field(default_factory=dict)
    status_calls: list[tuple[str, str]] = field(default_factory=list)
    connect_calls: list[tuple[str, str, int, str]] = field(default_factory=list)
    #: Hosts whose agent answers a connect at once (v2 respond-async): ``start_connect`` is None.
    async_connects: set[str] = field(default_factory=set)
    pulls: int = 0

    def pull_reports(self, targets: Sequence[Target], now: datetime) -> list[Report]:
        """Answer each target from ``reports``."""
        return [self.get_report(t, now) for t in targets]

    def get_report(self, target: Target, now: datetime) -> Report:
        """Answer one target from ``reports``."""
        self.pulls += 1
        report = self.reports.get(target.host_id)
        if report is None or target.host_id in self.unavailable:
            return unreachable_report(target.host_id, now, "ConnectTimeout")
        return report

    def init(self, target: Target, fence: int, activation_id: str) -> InitResult:
        """Record the call; refuse a fence below the highest accepted."""
        if target.host_id in self.unavailable:
            raise AgentUnavailable(f"{target.host_id}: ConnectTimeout")
        if fence < self.highest_fence.get(target.host_id, 0):
            raise StaleFence(f"agent refused fence {fence}", self.highest_fence[target.host_id])
        self.highest_fence[target.host_id] = fence
        self.init_calls.append((target.host_id, fence, activation_id))
        if target.host_id in self.init_errors:
            raise self.init_errors[target.host_id]
        return self.init_results.get(target.host_id, InitResult(ok=True))

    def start_init(self, target: Target, fence: int, activation_id: str) -> InitResult | None:
        """As ``init``, but answer at once that it runs (v2 respond-async): None.

        Unless a status is scripted for the activation, the init is then done with the host's
        ``init_results`` answer when asked.
        """
        result = self.init(target, fence, activation_id)
        if activation_id not in self.status_script and activation_id not in self.statuses:
            self.statuses[activation_id] = InitStatus(
                activation_id, fence, running=False, ok=result.ok, reason=result.reason, detail=result.detail
            )
        return None

    def init_status(self, target: Target, activation_id: str) -> InitStatus | None:
        """Answer from ``status_script``, then ``statuses``; None when the agent has no record."""
        if target.host_id in self.unavailable:
            raise AgentUnavailable(f"{target.host_id}: ConnectTimeout")
        self.status_calls.append((target.host_id, activation_id))
        script = self.status_script.get(activation_id)
        if script:
            return script.pop(0)
        return self.statuses.get(activation_id)

    def start_connect(
        self, target: Target, sd_id: str, fence: int, activation_id: str
    ) -> InitResult | None:
        """As ``connect_storage_domain``; a host in ``async_connects`` answers None (it runs it)."""
        result = self.connect_storage_domain(target, sd_id, fence, activation_id)
        return None if target.host_id in self.async_connects else result

    def connect_status(self, target: Target, sd_id: str, activation_id: str) -> InitStatus | None:
        """Answer from ``statuses`` (keyed by activation id, as inits); None: no record."""
        if target.host_id in self.unavailable:
            raise AgentUnavailable(f"{target.host_id}: ConnectTimeout")
        self.status_calls.append((target.host_id, activation_id))
        return self.statuses.get(activation_id)

    def raise_fence(self, target: Target, fence: int) -> int | None:
        """Raise the highest accepted fence (never lower it); record the call."""
        if target.host_id in self.unavailable:
            raise AgentUnavailable(f"{target.host_id}: ConnectTimeout")
        self.fence_calls.append((target.host_id, fence))
        highest = max(fence, self.highest_fence.get(target.host_id, 0))
        self.highest_fence[target.host_id] = highest
        return highest

    def connect_storage_domain(
        self, target: Target, sd_id: str, fence: int, activation_id: str
    ) -> InitResult:
        """Record the call; answer from ``connect_results`` (default ok) unless unavailable."""
        if target.host_id in self.unavailable:
            raise AgentUnavailable(f"{target.host_id}: ConnectTimeout")
        self.connect_calls.append((target.host_id, sd_id, fence, activation_id))
        return self.connect_results.get(target.host_id, InitResult(ok=True))
