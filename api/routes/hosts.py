"""Hosts: list, show, register, delete, autorecovery flag, maintenance and pushed reports."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Admin, AgentHolds, Fleet, HostId, HostPusher, Onboarding, Viewer, Views, error_responses
from api.errors import ApiError
from api.responses import HostBatchOut, HostDetail, HostPage
from api.schemas import AutorecoveryIn, HostBatchIn, HostIn, HostQuery, MaintenanceIn
from autorecovery.services.fleet import HostSpec
from models.report_wire import report_schema

router = APIRouter(tags=["hosts"])

MAX_REPORT_BYTES = 256 * 1024

_REPORT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": report_schema()}},  # the one report schema
    }
}


@router.get("/hosts", response_model=HostPage, responses=error_responses(401, 404, 422))
def list_hosts(q: Annotated[HostQuery, Query()], _: Viewer, views: Views) -> dict[str, Any]:
    """List hosts by id, filtered by status, cluster and autorecovery flag, a page at a time.

    An unknown ``cluster`` is a 404 naming it, not an empty page that reads as "all is well".
    """
    hosts = views.list_hosts(
        status=q.status.value if q.status else None,
        cluster_id=q.cluster,
        autorecovery=q.autorecovery,
        limit=q.limit + 1,
        after=q.after or "",
    )
    if not hosts and q.cluster:
        views.get_cluster(q.cluster)  # NotFound: 404 naming the cluster
    more = len(hosts) > q.limit
    hosts = hosts[: q.limit]
    return {"hosts": hosts, "next_after": hosts[-1]["id"] if more else None}


@router.get("/hosts/{host_id}", response_model=HostDetail, responses=error_responses(401, 404, 422))
def show_host(host_id: HostId, _: Viewer, views: Views) -> dict[str, Any]:
    """Show a host: status, latest problems, last decision, why it is not back, activations."""
    return views.describe(host_id)


@router.post(
    "/hosts",
    status_code=201,
    response_model=HostDetail,
    responses=error_responses(401, 403, 409, 422),
)
def register_host(body: HostIn, who: Admin, fleet: Fleet, views: Views) -> dict[str, Any]:
    """Register a host in a known cluster; it is unassigned until its first report.

    With ``adopt``, its first clean report marks it up without an init.
    """
    fleet.register_hosts([HostSpec(body.id, body.cluster, body.agent_url, body.adopt)], who.name)
    return views.describe(body.id)


@router.post(
    "/hosts/batch",
    status_code=201,
    response_model=HostBatchOut,
    responses={
        200: {"model": HostBatchOut, "description": "dry run"},
        **error_responses(401, 403, 409, 413, 422),
    },
    max_body_size=4 * 1024 * 1024,
)
def register_batch(
    body: HostBatchIn, who: Admin, onboarding: Onboarding, response: Response
) -> dict[str, Any]:
    """Register many hosts in one transaction: all of them, or none.

    Every problem (an id taken or listed twice, an unknown cluster) is named in ``errors`` as
    ``hosts[i].field`` with a 422, and nothing is written. ``dry_run`` checks and writes nothing.
    """
    specs = [HostSpec(h.id, h.cluster, h.agent_url, h.adopt) for h in body.hosts]
    if body.dry_run:
        problems = onboarding.check_hosts(specs)
        created: list[str] = []
    else:
        created, problems = onboarding.register_batch(specs, who.name)
    if problems:
        first = problems[0]
        raise ApiError(
            422,
            "invalid_input",
            f"{first.as_dict()['field']}: {first.message} ({len(problems)} problem(s); nothing written)",
            first.as_dict()["field"],
            extra={"errors": [p.as_dict() for p in problems]},
        )
    if body.dry_run:
        response.status_code = 200
    return {"dry_run": body.dry_run, "hosts": len(specs), "created": created}


@router.delete(
    "/hosts/{host_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404, 409, 422),
)
def delete_host(host_id: HostId, who: Admin, fleet: Fleet) -> Response:
    """Forget a host; refused (409, with the holder) while an activation is queued or running."""
    fleet.delete_host(host_id, who.name)
    return Response(status_code=204)


@router.put("/hosts/{host_id}/autorecovery", responses=error_responses(401, 403, 404, 422))
def set_autorecovery(host_id: HostId, body: AutorecoveryIn, who: Admin, fleet: Fleet) -> dict[str, Any]:
    """Turn the host's autorecovery on or off (audited with the caller as actor)."""
    fleet.set_autorecovery(host_id, body.enabled, who.name)
    return {"host_id": host_id, "autorecovery": body.enabled}


@router.post("/hosts/{host_id}/maintenance", responses=error_responses(401, 403, 404, 409, 422))
def set_maintenance(
    host_id: HostId, who: Admin, fleet: Fleet, body: MaintenanceIn | None = None
) -> dict[str, Any]:
    """Take a host out of service by hand; only a manual activation brings it back."""
    reason = body.reason if body else None
    fleet.set_maintenance(host_id, who.name, reason)
    return {"host_id": host_id, "status": "maintenance", "detail": reason or "set by an admin"}


@router.post("/hosts/{host_id}/clear-agent-hold", responses=error_responses(401, 403, 404, 409, 422))
def clear_agent_hold(host_id: HostId, who: Admin, holds: AgentHolds) -> dict[str, Any]:
    """Clear an ``agent_fence_ahead`` hold once the agent's state is restored: its agent is told
    the product's fence first (409 while it still claims a higher one)."""
    return holds.clear(host_id, who.name)


@router.post(
    "/hosts/{host_id}/report",
    openapi_extra=_REPORT_BODY,
    responses=error_responses(401, 403, 404, 413, 422),
    max_body_size=MAX_REPORT_BYTES,
)
async def push_report(host_id: HostId, request: Request, who: HostPusher, fleet: Fleet) -> dict[str, Any]:
    """Take a monitoring report pushed by the host's agent (agent protocol v1).

    An admin token, or a reporter token bound to this host. It is validated like a pulled one;
    a bad report is refused naming the field, stores nothing, and leaves a ``report_rejected``
    audit entry.
    """
    raw = await request.body()  # decoded by the report's one schema (models.report_wire)
    report, stored = await run_in_threadpool(fleet.receive_report, host_id, raw, who.name)
    return {"host_id": host_id, "reported_at": report.reported_at.isoformat(), "stored": stored}
