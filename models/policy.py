"""The recovery policy: status transitions and the activate-or-skip decision.

Both read the same ``Assessment``, so the rule that takes a host out is the rule that brings it
back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from models.assessment import Assessment, assess
from models.clock import stamp
from models.domain import Cluster, Host, HostStatus, Reason, Report, Trigger
from models.safety import NO_GATES, Gates


class Skip(StrEnum):
    """Why a host is not activated now: the answer to "why is host X not recovered?"."""

    HEALTHY = "healthy"
    MAINTENANCE = "maintenance"
    ACTIVATION_IN_FLIGHT = "activation_in_flight"
    AUTORECOVERY_OFF = "autorecovery_off"
    HAS_PROBLEMS = "has_problems"
    AGENT_UNREACHABLE = "agent_unreachable"
    STALE_REPORT = "stale_report"
    NO_REPORT = "no_report"
    LOCK_BUSY = "lock_busy"
    ALREADY_UP = "already_up"
    QUARANTINED = "quarantined"
    PAUSED = "paused"
    OBSERVER_UNHEALTHY = "observer_unhealthy"
    BACKOFF = "backoff"
    CAPPED = "capped"
    ERROR_PERIOD = "error_period"
    STORAGE_DOMAIN_INACTIVE = "storage_domain_inactive"
    UNTRACKED_INIT = "untracked_init"
    INIT_OUTCOME_UNKNOWN = "init_outcome_unknown"
    AGENT_FENCE_AHEAD = "agent_fence_ahead"
    AGENT_STATE_UNWRITABLE = "agent_state_unwritable"


ACTIVATE = "activate"
#: Activate to repair: every problem left is one the host's own init repairs (SPEC §2 "Repair").
REPAIR = "repair"

#: Decisions the policy reaches only on a fresh report with no problem, and only on a problem.
#: ``record_decisions`` stores which a host's latest decision is; PostgreSQL derives from it when
#: a fault cleared and how long the host took to come up (no code is copied into SQL).
CLEAN_DECISIONS = frozenset(
    {
        Skip.HEALTHY.value,
        ACTIVATE,
        Skip.CAPPED.value,
        Skip.PAUSED.value,
        Skip.OBSERVER_UNHEALTHY.value,
        Skip.BACKOFF.value,
        Skip.STORAGE_DOMAIN_INACTIVE.value,
    }
)
UNCLEAN_DECISIONS = frozenset(
    {
        Skip.HAS_PROBLEMS.value,
        Skip.AGENT_UNREACHABLE.value,
        Skip.STALE_REPORT.value,
        Skip.NO_REPORT.value,
        REPAIR,  # the report still shows what the init is sent to repair
    }
)

#: Statuses that monitoring follows and from which the tick may bring a host back (an
#: unassigned host, registered and never activated, is brought in by the same init).
RECOVERABLE_STATUSES = frozenset(
    {HostStatus.NON_OPERATIONAL, HostStatus.NON_RESPONSIVE, HostStatus.UNASSIGNED}
)
#: The reason a transition gives when an adopted host's first clean report marks it up.
ADOPTED = "adopted"
#: Statuses an automatic activation may start from: error counts once its period is over.
AUTO_ACTIVATABLE = RECOVERABLE_STATUSES | {HostStatus.ERROR}

#: First "reports" that hear nothing from the host: it stays unassigned (not a fault, and not
#: counted by the observer gate) until its agent answers.
NEVER_HEARD = frozenset({Reason.NO_REPORT, Reason.AGENT_UNREACHABLE})


@dataclass(frozen=True, slots=True)
class Transition:
    """A status change the tick applies, guarded by the status it was computed from."""

    host_id: str
    expected: HostStatus
    status: HostStatus
    reason: str
    detail: str
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Activate, or skip with a reason code and a sentence an operator can read."""

    host_id: str
    code: str
    detail: str

    @property
    def is_activate(self) -> bool:
        """True when the host should be activated now (to repair it, or with nothing wrong)."""
        return self.code in (ACTIVATE, REPAIR)

    @property
    def is_repair(self) -> bool:
        """True when the activation is sent to repair what the report shows."""
        return self.code == REPAIR

    @property
    def is_clean(self) -> bool | None:
        """True when reached only on a clean fresh report, False only on a problem, else None."""
        if self.code in CLEAN_DECISIONS:
            return True
        return False if self.code in UNCLEAN_DECISIONS else None


def transition(host: Host, assessment: Assessment) -> Transition | None:
    """Return the status change the assessment calls for, or None.

    An up host with a problem leaves service (non_responsive when it cannot be heard,
    non_operational otherwise). A host already out keeps its status but follows its current reason.
    Hosts in maintenance, initializing or error are not touched by monitoring. An unassigned
    host follows ``first_report``.
    """
    if host.status is HostStatus.UNASSIGNED:
        return first_report(host, assessment)
    problem = assessment.primary
    if problem is None:
        return None
    if host.status not in RECOVERABLE_STATUSES and host.status is not HostStatus.UP:
        return None
    status = HostStatus.NON_RESPONSIVE if assessment.is_silent else HostStatus.NON_OPERATIONAL
    if status is host.status and host.reason == problem.reason and host.detail == problem.detail:
        return None
    return Transition(
        host.id, host.status, status, problem.reason.value, problem.detail, problem.subject
    )


def first_report(host: Host, assessment: Assessment) -> Transition | None:
    """Return what a registered host's first report does to it, or None while it waits.

    Until a report comes (none yet, or its agent does not answer) the host stays unassigned. A
    clean first report marks an adopted host up without an init; a host not adopted stays
    unassigned and ``decide`` activates it (an init, as for any host out of service). A first
    report with a problem (stale, unusable, or a fault) takes the host out the normal way:
    non_responsive when it cannot be used, non_operational otherwise.
    """
    problem = assessment.primary
    if problem is not None and problem.reason in NEVER_HEARD:
        return None
    if problem is None:
        if not host.adopt:
            return None
        detail = "adopted: its first report is clean; up without an init"
        return Transition(host.id, HostStatus.UNASSIGNED, HostStatus.UP, ADOPTED, detail)
    status = HostStatus.NON_RESPONSIVE if assessment.is_silent else HostStatus.NON_OPERATIONAL
    return Transition(
        host.id, HostStatus.UNASSIGNED, status, problem.reason.value, problem.detail, problem.subject
    )


def apply(host: Host, change: Transition | None) -> Host:
    """Return the host as it is after ``change``."""
    if change is None:
        return host
    return replace(host, status=change.status, reason=change.reason, detail=change.detail)


def _problem_skip(assessment: Assessment) -> Skip:
    problem = assessment.primary
    assert problem is not None
    return {
        Reason.AGENT_UNREACHABLE: Skip.AGENT_UNREACHABLE,
        Reason.STALE_REPORT: Skip.STALE_REPORT,
        Reason.NO_REPORT: Skip.NO_REPORT,
        Reason.BAD_REPORT: Skip.STALE_REPORT,
    }.get(problem.reason, Skip.HAS_PROBLEMS)


def decide(
    host: Host,
    assessment: Assessment,
    trigger: Trigger = Trigger.AUTO,
    gates: Gates = NO_GATES,
    now: datetime | None = None,
    cluster: Cluster | None = None,
) -> Decision:
    """Decide whether to activate ``host`` now.

    Automatic activation needs a recoverable status, autorecovery on, no quarantine, no
    activation in flight, a fresh report with no problem (or only problems the host's init
    repairs: then the decision is ``repair``), no pause, a healthy observer and no backoff.
    A manual activation skips the flag, the holds and the problem checks: the admin
    asks, the agent answers. Caps are applied afterwards, across hosts (``safety.admit``).
    """

    def skip(code: Skip, detail: str) -> Decision:
        return Decision(host.id, code.value, detail)

    if host.status is HostStatus.UP:
        if assessment.is_healthy:
            unwritable = assessment.agent_state_unwritable
            return skip(Skip.HEALTHY, "host is up" + (f"; {_unwritable(unwritable)}" if unwritable else ""))
        return _problem_decision(host.id, assessment)
    if host.status is HostStatus.MAINTENANCE and trigger is Trigger.AUTO:
        return skip(Skip.MAINTENANCE, "host is in maintenance; only an admin activates it")
    if host.status is HostStatus.INITIALIZING or host.in_flight:
        return skip(Skip.ACTIVATION_IN_FLIGHT, "an activation is queued or running")
    if host.agent_hold is not None:
        # A security hold, for an admin too: the agent claimed a fence the product never issued.
        return skip(
            Skip.AGENT_FENCE_AHEAD,
            "held: its agent claimed a fence the product never issued (a security event); restore "
            "the agent's state, then clear the hold (autorecovery hosts clear-agent-hold)",
        )
    if now is not None and host.init_hold_until is not None and now < host.init_hold_until:
        # A safety hold, for an admin too: a second init must never overlap one still running.
        return skip(
            Skip.INIT_OUTCOME_UNKNOWN,
            "an earlier init's outcome was not seen and it may still run on the host (v1 agent); "
            f"no new init before {stamp(host.init_hold_until)}",
        )
    if trigger is Trigger.MANUAL:
        return Decision(host.id, ACTIVATE, "activation requested by an admin")
    if host.status is HostStatus.ERROR:
        if now is None or host.error_until is None or now < host.error_until:
            until = stamp(host.error_until) if host.error_until else "an admin activates it"
            return skip(Skip.ERROR_PERIOD, f"in error for failed VM launches until {until}")
    elif host.status not in RECOVERABLE_STATUSES:
        return skip(Skip.HAS_PROBLEMS, f"status {host.status.value} is not recovered automatically")
    if not host.autorecovery:
        return skip(Skip.AUTORECOVERY_OFF, "autorecovery is off for this host; activate it by hand")
    if host.quarantined_at is not None:
        return skip(
            Skip.QUARANTINED,
            "quarantined for flapping since "
            f"{stamp(host.quarantined_at)}; an admin clears it or activates the host",
        )
    if not assessment.is_recoverable:
        return _problem_decision(host.id, assessment)
    if assessment.agent_state_unwritable is not None:
        # Its agent refuses every init (503) and could not keep the fence it would be told.
        return skip(
            Skip.AGENT_STATE_UNWRITABLE,
            f"{_unwritable(assessment.agent_state_unwritable)}; it refuses every init until it can, "
            "so none is sent automatically: free or fix the agent's state directory",
        )
    waiting = sorted(cluster.storage_domains & gates.inactive_domains) if cluster else []
    if waiting:
        return skip(
            Skip.STORAGE_DOMAIN_INACTIVE,
            f"waiting for storage domain {', '.join(waiting)} to be activated first",
        )
    if now is not None:
        pause = gates.pause_for(host.cluster_id, now)
        if pause is not None:
            return skip(Skip.PAUSED, pause.describe())
    if gates.observer_block is not None:
        return skip(Skip.OBSERVER_UNHEALTHY, gates.observer_block)
    if now is not None and host.next_attempt_at is not None and now < host.next_attempt_at:
        return skip(
            Skip.BACKOFF,
            f"{host.failures} failed attempt(s) in a row; next attempt after "
            f"{stamp(host.next_attempt_at)}",
        )
    if assessment.is_repairable:
        return Decision(host.id, REPAIR, "init repairs what keeps it out: " + _problems_text(assessment))
    return Decision(host.id, ACTIVATE, "fresh report shows no problem")


def _unwritable(said: str) -> str:
    return f"its agent cannot persist its fence (the agent says: {said})"


def _problems_text(assessment: Assessment) -> str:
    return "; ".join(f"{p.reason.value}: {p.detail}" for p in assessment.problems)


def _problem_decision(host_id: str, assessment: Assessment) -> Decision:
    """Skip for the problems; a lone problem named like the skip is not named twice.

    ``agent_unreachable`` with ``cannot connect ...``, not ``agent_unreachable: agent_unreachable: ...``.
    """
    code = _problem_skip(assessment)
    problems = assessment.problems
    if len(problems) == 1 and problems[0].reason.value == code.value:
        return Decision(host_id, code.value, problems[0].detail)
    return Decision(host_id, code.value, _problems_text(assessment))


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One host's assessment, the status change it calls for, and the decision after it."""

    host: Host
    assessment: Assessment
    transition: Transition | None
    decision: Decision


def evaluate(
    host: Host,
    report: Report | None,
    cluster: Cluster,
    now: datetime,
    max_report_age_s: float,
    gates: Gates = NO_GATES,
    tracked: str | None = None,
) -> Evaluation:
    """Assess a host, work out its status change, and decide on the host as it is after it.

    ``tracked`` is the id of the host's activation in flight, when the caller knows it.
    """
    assessment = assess(report, cluster, now, max_report_age_s)
    change = transition(host, assessment)
    after = apply(host, change)
    decision = decide(after, assessment, Trigger.AUTO, gates, now, cluster)
    if decision.is_activate or decision.code == Skip.ACTIVATION_IN_FLIGHT:
        decision = untracked_init(after, report, tracked) or decision
    return Evaluation(after, assessment, change, decision)


def untracked_init(host: Host, report: Report | None, tracked: str | None) -> Decision | None:
    """Hold a host whose agent reports an init the product does not track; None otherwise.

    Tracked means: an activation of this host is queued or running with that id (when the
    caller does not know the id, any activation in flight counts as tracking it). A second init
    beside one still running is what fencing cannot undo, so the host waits until it ends.
    """
    init = report.init if report is not None and report.agent_reachable else None
    if init is None or (host.in_flight and tracked in (None, init.activation_id)):
        return None
    since = f" since {stamp(init.started_at)}" if init.started_at else ""
    return Decision(
        host.id,
        Skip.UNTRACKED_INIT.value,
        f"its agent reports an init the product does not track (activation {init.activation_id}, "
        f"fence {init.fence}{since}); no automatic activation until it ends",
    )


def recheck(
    host: Host,
    assessment: Assessment,
    trigger: Trigger,
    gates: Gates = NO_GATES,
    now: datetime | None = None,
    cluster: Cluster | None = None,
) -> Decision:
    """Decide inside a running activation, on the fresh report it just pulled.

    The activation's own record is the one in flight; ``initializing`` left by an earlier
    attempt of this same activation counts as out of service.
    """
    if host.status is HostStatus.UP:
        return Decision(host.id, Skip.ALREADY_UP.value, "host is already up; nothing to do")
    if host.status is HostStatus.INITIALIZING:
        host = replace(host, status=HostStatus.NON_OPERATIONAL)
    return decide(replace(host, in_flight=False), assessment, trigger, gates, now, cluster)
