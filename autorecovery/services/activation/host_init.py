"""The init of a host through its agent, in short steps, and the close on its outcome.

Send (the first step): a v2 agent gets ``POST /init`` with ``Prefer: respond-async`` and answers
at once that it runs the init; a v1 agent gets a blocking call capped at one call's timeout. An
init whose outcome is not known yet (running, or its answer unseen: read timeout, lost
connection) leaves the activation ``sent``: the record holds the host ``initializing`` until its
deadline, ``init_max_s`` after the answer was seen (PostgreSQL's clock), and no process waits.

Check (each later step): a v2 agent is asked ``GET /init/{id}``; done → close as the agent says,
``up`` only on a clean fresh report; not known yet → ask again (``poll_s`` after the send, then
less often the longer the init runs, up to ``poll_max_s``: a hung init costs a few checks, not
one every ``poll_s`` until its deadline, and a fast one is seen at once); past the deadline
→ abandoned, outcome unknown: nobody is charged, but repeated unknown outcomes on a host back it
off as failures do (a v1 host whose init always outlasts the timeout is not re-sent forever).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from autorecovery.adapters.agents import InitResult, InitStatus, Target
from autorecovery.services.activation import agent_fence
from autorecovery.services.activation.kinds import ActivationRef, Closing, Outcome, Run
from models.assessment import assess
from models.domain import ActivationState, Cluster, Host, HostStatus, Reason
from models.errors import AgentBusy, AgentUnavailable, InitOutcomeUnknown, StaleFence
from models.safety import Gates

if TYPE_CHECKING:
    from autorecovery.services.activation.hosts import HostKind

log = logging.getLogger(__name__)

#: Agent protocol version that can be asked how an init went.
ASKABLE_PROTOCOL = 2
RUNNING = "running"
UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Subject:
    """The host being activated, as loaded when its activation began."""

    host: Host
    cluster: Cluster
    gates: Gates
    #: Agent protocol of the host's fresh report (2: the agent can be asked about an init).
    protocol: int = 1
    #: A resumed activation's host status before its earlier attempt set ``initializing``.
    was_status: HostStatus | None = None

    @property
    def before(self) -> HostStatus:
        """The host's status before this activation (what its close counts from: back from error)."""
        return self.was_status or self.host.status

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
    """How long an init's outcome may stay unknown, and how often its agent is asked."""

    init_max_s: float = 20.0
    poll_s: float = 1.0
    #: The longest wait between two checks of a long-running init.
    poll_max_s: float = 15.0

    def next_poll_s(self, running_s: float, left_s: float) -> float:
        """When to ask again about an init sent ``running_s`` ago, ``left_s`` before its deadline.

        Half the time it has run so far, from ``poll_s`` up to ``poll_max_s`` (so an init
        running for long is asked about geometrically less often), never past its deadline by
        more than ``poll_s`` (it is closed there).
        """
        wait_s = min(max(self.poll_s, running_s / 2), max(self.poll_s, self.poll_max_s))
        return max(self.poll_s, min(wait_s, left_s))


@dataclass(frozen=True, slots=True)
class HostEnd:
    """A host's new status when its activation closes (None: left as it is)."""

    status: HostStatus | None = None
    #: No new init to the host before this time (an init's outcome was not seen).
    hold_until: datetime | None = None
    #: The init's outcome was never seen: back the host off (an automatic one), uncharged.
    unknown: bool = False


def send_init(kind: HostKind, run: Run, subject: Subject) -> Outcome:
    """Send the init (the caller has just guarded it); close on an answer, else leave it sent."""
    if run.resumed:
        earlier = _earlier_init(kind, run, subject)
        if earlier is not None:
            return earlier
    try:
        if subject.is_askable:
            result = kind.agents.start_init(subject.target, run.fence, run.activation_id)
        else:
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
        return _sent(kind, run, subject, UNKNOWN)
    if result is None:
        return _sent(kind, run, subject, RUNNING)
    return conclude(kind, run, subject, result)


def _sent(kind: HostKind, run: Run, subject: Subject, answer: str) -> Outcome:
    return kind.core.mark_sent(
        kind,
        run,
        answer=answer,
        protocol=subject.protocol,
        hold_s=kind.wait.init_max_s,
        was=subject.before.value,
    )


def _earlier_init(kind: HostKind, run: Run, subject: Subject) -> Outcome | None:
    """A resumed activation whose earlier attempt may have sent its init: never send another.

    A v2 agent is asked; a v1 host left ``initializing`` (the earlier attempt got that far) is
    held as an unseen init. None: nothing was sent, send now.
    """
    if subject.is_askable:
        try:
            status = kind.agents.init_status(subject.target, run.activation_id)
        except AgentUnavailable:
            return None  # a v2 agent refuses an overlapping init itself (busy)
        if status is None:
            return None
        log.info("host %s: activation %s resumed; the agent knows its init", run.object_id, run.activation_id)
        result = status.result()
        return _sent(kind, run, subject, RUNNING) if result is None else _asked(kind, run, subject, result)
    if subject.host.status is HostStatus.INITIALIZING:
        return _sent(kind, run, subject, UNKNOWN)
    return None


def settle(kind: HostKind, run: Run, ref: ActivationRef) -> Outcome:
    """Ask a v2 agent how the init went and close; past the deadline the outcome is unknown."""
    subject = kind.subject(run)
    if subject is None:
        closing = Closing(
            ActivationState.SKIPPED, "host_missing", "host or its cluster is no longer registered"
        )
        return kind.core.close(kind, run, closing)
    # The host is initializing now; what it was before counts for the close (back from error).
    was = replace(subject.host, status=HostStatus(ref.was_status)) if ref.was_status else subject.host
    subject = replace(subject, host=was, protocol=ref.protocol)
    status = _ask(kind, run, subject) if subject.is_askable else None
    result = status.result() if status is not None else None
    if result is not None:
        return _asked(kind, run, subject, result)
    if ref.past_deadline:
        how = "asked the agent until its deadline" if subject.is_askable else "v1 agent: held"
        return _unknown(kind, run, subject, f"init outcome unknown; {how} ({kind.wait.init_max_s:g}s)")
    return kind.outcome(
        run.activation_id,
        run.object_id,
        "sent",
        "init running" if status is not None else "init outcome not known yet",
        run.fence,
        check_in_s=_next_poll_s(kind, ref),
    )


def _next_poll_s(kind: HostKind, ref: ActivationRef) -> float:
    """The next check's countdown: less often the longer the init has run (``InitWait``)."""
    if ref.deadline_at is None:
        return kind.wait.poll_s
    left_s = (ref.deadline_at - kind.clock()).total_seconds()
    return kind.wait.next_poll_s(kind.wait.init_max_s - left_s, left_s)


def _ask(kind: HostKind, run: Run, subject: Subject) -> InitStatus | None:
    try:
        return kind.agents.init_status(subject.target, run.activation_id)
    except AgentUnavailable as exc:
        log.info("host %s: init status unanswered: %s", run.object_id, exc)
        return None


def _asked(kind: HostKind, run: Run, subject: Subject, result: InitResult) -> Outcome:
    with kind.core.statements() as conn:  # one audit row
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
                "detail": "asked the agent, done: " + ("ok" if result.ok else "failed"),
            },
        )
    return conclude(kind, run, subject, result)


def _unknown(kind: HostKind, run: Run, subject: Subject, detail: str) -> Outcome:
    """Close with the init's outcome unknown: host out, not charged, backed off (automatic)."""
    closing = Closing(
        ActivationState.ABANDONED, "outcome_unknown", detail, reason=Reason.ACTIVATION_FAILED.value
    )
    end = HostEnd(HostStatus.NON_OPERATIONAL, unknown=True)
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
    closing = Closing(ActivationState.DONE, "up", "agent init ok; report clean")
    return kind.core.close(kind, run, closing, kind.writes(run, subject, closing, HostEnd(HostStatus.UP)))


def _fail(kind: HostKind, run: Run, subject: Subject, outcome: str, reason: str, detail: str) -> Outcome:
    closing = Closing(ActivationState.FAILED, outcome, detail, reason=reason)
    end = HostEnd(HostStatus.NON_OPERATIONAL)
    return kind.core.close(kind, run, closing, kind.writes(run, subject, closing, end))
