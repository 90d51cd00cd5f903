"""The init of a host through its agent, and the close on its answer."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from autorecovery.adapters.agents import InitResult, Target
from autorecovery.services.activation.kinds import Closing, Outcome, Run
from models.assessment import assess
from models.domain import ActivationState, Cluster, Host, HostStatus, Reason
from models.errors import AgentUnavailable, InitOutcomeUnknown, StaleFence
from models.safety import Gates

if TYPE_CHECKING:
    from autorecovery.services.activation.hosts import HostKind

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Subject:
    """The host being activated, as loaded when its activation began."""

    host: Host
    cluster: Cluster
    gates: Gates

    @property
    def target(self) -> Target:
        """Where its agent answers."""
        return Target(self.host.id, self.host.agent_url)


@dataclass(frozen=True, slots=True)
class HostEnd:
    """A host's new status when its activation closes (None: left as it is)."""

    status: HostStatus | None = None
    raise_fence_to: int | None = None


def run_init(kind: HostKind, run: Run, subject: Subject) -> Outcome:
    """Send the init (the caller has just guarded it) and close on the answer."""
    try:
        result = kind.agents.init(subject.target, run.fence, run.activation_id)
    except StaleFence as exc:
        log.warning(
            "host %s: agent refused fence %s (highest accepted %s)", run.object_id, run.fence, exc.highest
        )
        # If PostgreSQL still has our fence, its counter is behind the agent's (a restored
        # database): record the failure and move the counter past the agent's.
        closing = Closing(
            ActivationState.FAILED,
            "stale_fence",
            f"agent refused fence {run.fence}: {exc}",
            reason=Reason.ACTIVATION_FAILED.value,
        )
        end = HostEnd(HostStatus.NON_OPERATIONAL, raise_fence_to=exc.highest)
        return kind.core.close(kind, run, closing, kind.writes(run, subject, closing, end))
    except (AgentUnavailable, InitOutcomeUnknown) as exc:
        result = InitResult(ok=False, reason=Reason.ACTIVATION_FAILED.value, detail=str(exc))
    return conclude(kind, run, subject, result)


def conclude(kind: HostKind, run: Run, subject: Subject, result: InitResult) -> Outcome:
    """Close on the init's result: up only when the report after init is clean."""
    if not result.ok:
        return _fail(
            kind,
            run,
            subject,
            "failed",
            result.reason or Reason.GENERAL.value,
            result.detail or "agent init failed",
        )
    report = kind.agents.get_report(subject.target, kind.clock())
    assessment = assess(report, subject.cluster, kind.clock(), kind.report_max_age_s)
    if assessment.primary is not None:
        return _fail(
            kind,
            run,
            subject,
            "unhealthy_after_init",
            assessment.primary.reason.value,
            assessment.primary.detail,
        )
    closing = Closing(ActivationState.SUCCEEDED, "up", "agent init ok; report clean")
    return kind.core.close(kind, run, closing, kind.writes(run, subject, closing, HostEnd(HostStatus.UP)))


def _fail(kind: HostKind, run: Run, subject: Subject, outcome: str, reason: str, detail: str) -> Outcome:
    closing = Closing(ActivationState.FAILED, outcome, detail, reason=reason)
    end = HostEnd(HostStatus.NON_OPERATIONAL)
    return kind.core.close(kind, run, closing, kind.writes(run, subject, closing, end))
