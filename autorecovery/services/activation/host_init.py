"""The init of a host through its agent, and the close on its answer.

An init whose answer was not seen (read timeout, lost connection, soft time limit) is never a
failed init: a v2 agent is asked (``init_status``) until the init is done or ``init_max_s`` has
passed, the host staying ``initializing`` under the renewed lock; a v1 agent's host gets no new
init for ``init_max_s``. A busy agent is a hold. None of these is charged to the host.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from autorecovery.adapters.agents import InitResult, InitStatus, Target
from autorecovery.services.activation import agent_fence
from autorecovery.services.activation.kinds import Closing, Outcome, Run
from models.assessment import assess
from models.domain import ActivationState, Cluster, Host, HostStatus, Reason
from models.errors import AgentBusy, AgentUnavailable, InitOutcomeUnknown, LockLost, StaleFence
from models.safety import Gates

if TYPE_CHECKING:
    from autorecovery.services.activation.hosts import HostKind

log = logging.getLogger(__name__)

#: Agent protocol version that can be asked how an init went.
ASKABLE_PROTOCOL = 2


@dataclass(frozen=True, slots=True)
class Subject:
    """The host being activated, as loaded when its activation began."""

    host: Host
    cluster: Cluster
    gates: Gates
    #: Agent protocol of the host's fresh report (2: the agent can be asked about an init).
    protocol: int = 1

    @property
    def target(self) -> Target:
        """Where its agent answers."""
        return Target(self.host.id, self.host.agent_url)

    @property
    def is_askable(self) -> bool:
        """True when the agent answers ``GET /init/{activation_id}`` (protocol v2)."""
        return self.protocol >= ASKABLE_PROTOCOL


@dataclass(frozen=True, slots=True)
class InitWait:
    """How long an init whose answer was not seen is waited for, and how often one asks."""

    init_max_s: float = 20.0
    poll_s: float = 1.0
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True, slots=True)
class HostEnd:
    """A host's new status when its activation closes (None: left as it is)."""

    status: HostStatus | None = None
    #: No new init to the host before this time (an init's outcome was not seen).
    hold_until: datetime | None = None


def run_init(kind: HostKind, run: Run, subject: Subject) -> Outcome:
    """Send the init (the caller has just guarded it) and close on the answer."""
    earlier = _earlier_init(kind, run, subject)
    if earlier is not None:
        log.info("host %s: activation %s resumed; the agent knows its init", run.object_id, run.activation_id)
        return _after_unseen(kind, run, subject, kind.clock(), earlier)
    sent_at = kind.clock()
    try:
        result = kind.agents.init(subject.target, run.fence, run.activation_id)
    except StaleFence as exc:
        return agent_fence.refused(kind, run, subject, exc)
    except AgentBusy as exc:
        # Another init runs on the host: a hold, not a failure; the host goes back as it was.
        log.info("host %s: agent busy with activation %s; not charged", run.object_id, exc.activation_id)
        closing = Closing(
            ActivationState.ABANDONED,
            "agent_busy",
            f"agent busy: {exc}",
            reason=Reason.ACTIVATION_FAILED.value,
        )
        return kind.core.close(kind, run, closing, kind.restore(run, subject))
    except AgentUnavailable as exc:
        result = InitResult(ok=False, reason=Reason.ACTIVATION_FAILED.value, detail=str(exc))
    except InitOutcomeUnknown as exc:
        log.warning("host %s: activation %s init outcome unknown: %s", run.object_id, run.activation_id, exc)
        return _after_unseen(kind, run, subject, sent_at, None)
    return conclude(kind, run, subject, result)


def _earlier_init(kind: HostKind, run: Run, subject: Subject) -> InitStatus | None:
    """What a v2 agent knows of an init an earlier attempt of this activation may have sent."""
    if not (run.resumed and subject.is_askable):
        return None
    try:
        return kind.agents.init_status(subject.target, run.activation_id)
    except AgentUnavailable:
        return None  # a v2 agent refuses an overlapping init itself (busy)


def _after_unseen(
    kind: HostKind, run: Run, subject: Subject, sent_at: datetime, status: InitStatus | None
) -> Outcome:
    """Learn an unseen init's result from a v2 agent, or hold the host; never a failure."""
    try:
        result = wait_for_result(kind, run, subject, sent_at, status) if subject.is_askable else None
    except LockLost as exc:
        return _unknown(kind, run, subject, sent_at, f"lock lost while waiting for the init: {exc}")
    if result is None:
        how = "asked the agent until" if subject.is_askable else "v1 agent: no new init for"
        return _unknown(kind, run, subject, sent_at, f"init outcome unknown; {how} {kind.wait.init_max_s:g}s")
    with kind.core.db.transaction() as conn:
        kind.core.audit(
            conn,
            kind,
            run.object_id,
            "init_outcome_asked",
            run.actor,
            "done: ok" if result.ok else f"done: {result.reason}",
            {
                "activation_id": run.activation_id,
                "fence": run.fence,
                "detail": "outcome unknown, asked the agent, done: " + ("ok" if result.ok else "failed"),
            },
        )
    return conclude(kind, run, subject, result)


def wait_for_result(
    kind: HostKind, run: Run, subject: Subject, sent_at: datetime, status: InitStatus | None
) -> InitResult | None:
    """Ask the agent how the init went until it is done or ``init_max_s`` after it was sent."""
    deadline = sent_at + timedelta(seconds=kind.wait.init_max_s)
    while True:
        if status is not None and not status.running:
            return status.result()
        if kind.clock() >= deadline:
            return None
        kind.wait.sleep(kind.wait.poll_s)
        kind.core.guard(kind, run)
        try:
            status = kind.agents.init_status(subject.target, run.activation_id)
        except AgentUnavailable as exc:
            log.info("host %s: init status unanswered: %s", run.object_id, exc)
            status = None


def _unknown(kind: HostKind, run: Run, subject: Subject, sent_at: datetime, detail: str) -> Outcome:
    """Close with the init's outcome unknown: host out, no charge, held (v1) for the longest init."""
    closing = Closing(
        ActivationState.ABANDONED, "outcome_unknown", detail, reason=Reason.ACTIVATION_FAILED.value
    )
    hold = None if subject.is_askable else sent_at + timedelta(seconds=kind.wait.init_max_s)
    end = HostEnd(HostStatus.NON_OPERATIONAL, hold_until=hold)
    return kind.core.close(kind, run, closing, kind.writes(run, subject, closing, end))


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
