"""The audit log and the dry-run plan: what happened, and what the next tick would do."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import Safety, Viewer, Views, error_responses
from api.responses import AuditPage, Plan
from api.schemas import AuditQuery, PlanQuery

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=AuditPage, responses=error_responses(401, 422))
def audit(q: Annotated[AuditQuery, Query()], _: Viewer, views: Views) -> dict[str, Any]:
    """Audit entries, newest first, filtered by object, actor, event and time; paginated.

    Filter an object with ``object_type`` and ``object_id`` (e.g. ``host`` and ``h-0001``).
    """
    entries = views.audit_log(
        object_type=q.object_type,
        object_id=q.object_id,
        actor=q.actor,
        event=q.event,
        since=q.since,
        before_id=q.before,
        limit=q.limit + 1,
    )
    more = len(entries) > q.limit
    entries = entries[: q.limit]
    return {"entries": entries, "next_before": entries[-1]["id"] if more else None}


@router.get("/plan", response_model=Plan, responses=error_responses(401, 404, 422))
def plan(q: Annotated[PlanQuery, Query()], _: Viewer, views: Views, safety: Safety) -> dict[str, Any]:
    """What the next tick would do for each host and why, from the same policy; changes nothing.

    It reads the stored reports; the tick pulls fresh ones first, so a host whose report is
    about to go stale may differ. ``gate`` is the observer's reason to hold every automatic
    activation (null when it does not) and ``pauses`` the pauses in force; hosts they hold skip
    with ``observer_unhealthy`` or ``paused``, and hosts over a cap with ``capped``.
    """
    hosts = views.plan(cluster_id=q.cluster)
    if not hosts and q.cluster:
        views.get_cluster(q.cluster)  # NotFound: 404 naming the cluster
    state = safety.state()
    activate = sum(1 for h in hosts if h["action"] == "activate")
    return {
        "gate": state["gate"],
        "pauses": state["pauses"],
        "hosts": hosts,
        "activate": activate,
        "skip": len(hosts) - activate,
    }
