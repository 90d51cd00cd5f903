"""The product owns the fences: an agent ahead of them is held, an agent new or behind is told first.

Two small steps the activation calls (SPEC Appendix B, "Fences are bounded and owned by the
product" and "Agent state"):

- ``tell_agent`` before the init: when the report's ``agent.state_id`` is not the one that last
  learnt the product's fence, or its ``highest_fence`` is behind the product's, push the
  product's fence (``POST /fence``) first, so an old holder's init cannot run on a new state;
- ``refused`` on a ``stale_fence`` answer: the product never moves its counter to the agent's.
  An agent claiming a fence the product never issued is a security event: the host is held
  (``agent_fence_ahead``, audited, counted) until an admin clears it (``services.agent_hold``).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from autorecovery.services.activation import host_init
from autorecovery.services.activation.kinds import Closing, Outcome, Run
from models.domain import ActivationState, AgentState, HostStatus, Reason
from models.errors import AgentUnavailable, StaleFence
from models.fencing import AGENT_FENCE_AHEAD, is_agent_ahead

if TYPE_CHECKING:
    from autorecovery.services.activation.host_init import Subject
    from autorecovery.services.activation.hosts import HostKind

log = logging.getLogger(__name__)


def _claim(value: int | None) -> int | str | None:
    """A claimed fence as the audit keeps it (a number past bigint as text)."""
    return value if value is None or value < 2**63 else str(value)


def hold_if_ahead(kind: HostKind, run: Run, claimed: int | None, source: str, *, refused: bool) -> bool:
    """Hold the host (audited) when its agent claims a fence the product never issued; True if so.

    Written in its own transaction, whatever becomes of the activation: the event concerns the
    host. ``refused``: the claim comes with a refusal of ``run.fence`` (a ``stale_fence``).
    A claim up to ``run.fence`` is never ahead (the product issued it, and its counter only grows):
    the counter is then not read, so the usual report costs no round trip.
    """
    if not refused and (claimed is None or claimed <= run.fence):
        return False
    with kind.core.db.transaction() as conn:
        issued = kind.repos.hosts.issued_fence(conn, run.object_id)
        if issued is None:
            return False
        ahead = is_agent_ahead(claimed, issued, run.fence if refused else None)
        if not ahead:
            return False
        detail = (
            f"the agent claims fence {claimed} ({source}); the product issued at most {issued}: "
            "restore the agent's state, then clear the hold"
        )
        if kind.repos.hosts.hold_agent(conn, run.object_id, AGENT_FENCE_AHEAD, detail):
            kind.core.audit(
                conn,
                kind,
                run.object_id,
                "agent_fence_ahead",
                run.actor,
                AGENT_FENCE_AHEAD,
                {
                    "claimed": _claim(claimed),
                    "issued": issued,
                    "sent": run.fence,
                    "source": source,
                    "activation_id": run.activation_id,
                },
            )
    log.error(
        "host %s: SECURITY: agent claims fence %s (%s), the product issued at most %s; host held (%s)",
        run.object_id,
        claimed,
        source,
        issued,
        AGENT_FENCE_AHEAD,
    )
    return True


def _close_held(kind: HostKind, run: Run, subject: Subject, *, initializing: bool) -> Outcome:
    """Close an activation whose host was just held: abandoned, nobody charged."""
    detail = "the agent claims a fence the product never issued; host held (security event)"
    closing = Closing(ActivationState.ABANDONED, AGENT_FENCE_AHEAD, detail, reason=AGENT_FENCE_AHEAD)
    end = host_init.HostEnd(HostStatus.NON_OPERATIONAL if initializing else None)
    return kind.core.close(kind, run, closing, kind.writes(run, subject, closing, end))


def refused(kind: HostKind, run: Run, subject: Subject, exc: StaleFence) -> Outcome:
    """Close on a ``stale_fence`` answer to the init; the product's counter never moves to the agent's."""
    log.warning("host %s: agent refused fence %s (claims %s)", run.object_id, run.fence, exc.highest)
    if hold_if_ahead(kind, run, exc.highest, "stale_fence", refused=True):
        return _close_held(kind, run, subject, initializing=True)
    return kind.core.wrote_nothing(kind, run, exc)  # a fence the product issued superseded ours


def _not_pushed(kind: HostKind, run: Run, subject: Subject, error: str) -> Outcome:
    """Close an activation whose agent could not be told the fence: abandoned, nobody charged.

    An infrastructure problem, backed off as unknown outcomes are (an automatic activation), so
    that each tick does not start, and bump the fence of, another activation. A host an earlier
    attempt of this activation left ``initializing`` is out again, and held (an init may run).
    """
    detail = f"could not push fence {run.fence} to a new or lagging agent state: {error}"
    stuck = subject.host.status is HostStatus.INITIALIZING
    reason = Reason.ACTIVATION_FAILED.value if stuck else "fence_not_pushed"
    closing = Closing(ActivationState.ABANDONED, "fence_not_pushed", detail, reason=reason)
    end = host_init.HostEnd(None, unknown=True)
    if stuck:
        hold = kind.clock() + timedelta(seconds=kind.wait.init_max_s)
        end = host_init.HostEnd(HostStatus.NON_OPERATIONAL, hold_until=hold, unknown=True)
    return kind.core.close(kind, run, closing, kind.writes(run, subject, closing, end))


def tell_agent(kind: HostKind, run: Run, subject: Subject, agent: AgentState | None) -> Outcome | None:
    """Before the init: push the product's fence to a new or lagging agent state; None to go on.

    Returns the activation's outcome when it had to end here (the agent is ahead, or could not be
    told: abandoned, nobody charged, the host left as it was).
    """
    if agent is None:
        return None  # an agent that does not report its state (v1, or older v2)
    if hold_if_ahead(kind, run, agent.highest_fence, "report", refused=False):
        return _close_held(kind, run, subject, initializing=False)
    is_new = agent.state_id != subject.host.agent_state_id
    is_behind = agent.highest_fence < run.fence - 1
    if not (is_new or is_behind):
        return None
    kind.core.guard(kind, run)
    try:
        highest = kind.agents.raise_fence(subject.target, run.fence)
    except AgentUnavailable as exc:
        highest, error = None, str(exc)
    else:
        error = "the agent has no POST /fence"
    if highest is None:
        return _not_pushed(kind, run, subject, error)
    if hold_if_ahead(kind, run, highest, "fence", refused=False):
        return _close_held(kind, run, subject, initializing=False)
    with kind.core.db.transaction() as conn:
        kind.repos.hosts.set_agent_state(conn, run.object_id, agent.state_id)
        kind.core.audit(
            conn,
            kind,
            run.object_id,
            "agent_fence_pushed",
            run.actor,
            "agent_state_new" if is_new else "agent_behind",
            {
                "state_id": agent.state_id,
                "was": agent.highest_fence,
                "pushed": run.fence,
                "activation_id": run.activation_id,
            },
        )
    log.info(
        "host %s: agent state %s (highest %d) told fence %d before the init",
        run.object_id,
        agent.state_id,
        agent.highest_fence,
        run.fence,
    )
    return None
