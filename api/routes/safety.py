"""Safety controls: pauses, a host's holds (quarantine, backoff) and what gates activation now.

Every write is an admin's and is audited with the token's name; reads are a viewer's.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter

from api.deps import Admin, ClusterId, HostId, Safety, Viewer, Views, error_responses
from api.errors import ApiError
from api.responses import HoldsCleared, PauseList, PauseOut, SafetyState
from api.schemas import PauseIn
from autorecovery.services.safety import SafetyService, pause_as_dict
from models.errors import NotFound
from models.safety import FLEET

router = APIRouter(tags=["safety"])


def _expiry(body: PauseIn, safety: SafetyService) -> datetime | None:
    if body.duration_s is not None:
        return safety.clock() + timedelta(seconds=body.duration_s)
    return body.expires_at


def _resume(safety: SafetyService, scope: str, actor: str) -> dict[str, Any]:
    try:
        return pause_as_dict(safety.resume(scope, actor))
    except NotFound as exc:
        if exc.kind != "pause":
            raise
        where = "fleet-wide" if scope == FLEET else f"for cluster {scope}"
        raise ApiError(404, "not_paused", f"automatic activation is not paused {where}") from None


def _cluster_scope(cluster_id: str) -> str:
    # The fleet-wide pause is stored under the scope "fleet": a cluster of that name cannot
    # have a pause of its own without lifting or replacing the fleet's.
    if cluster_id == FLEET:
        raise ApiError(
            422,
            "invalid_input",
            f"cluster_id: {FLEET!r} names the fleet-wide pause; use /api/v1/pause",
            "cluster_id",
        )
    return cluster_id


@router.put("/pause", response_model=PauseOut, responses=error_responses(401, 403, 422))
def pause_fleet(body: PauseIn, who: Admin, safety: Safety) -> dict[str, Any]:
    """Stop automatic activation across the fleet, with a reason and an optional expiry.

    ``duration_s`` or ``expires_at`` (RFC 3339, in the future) bound it; with neither it lasts
    until lifted. Pausing again replaces the pause. Manual activation still works.
    """
    return pause_as_dict(safety.pause(FLEET, body.reason, who.name, _expiry(body, safety)))


@router.delete("/pause", response_model=PauseOut, responses=error_responses(401, 403, 404))
def resume_fleet(who: Admin, safety: Safety) -> dict[str, Any]:
    """Lift the fleet-wide pause; answer the pause lifted (404 ``not_paused`` when none)."""
    return _resume(safety, FLEET, who.name)


@router.get("/pause", response_model=PauseList, responses=error_responses(401))
def pauses(_: Viewer, safety: Safety) -> dict[str, Any]:
    """The pauses in force, fleet-wide and per cluster."""
    return {"pauses": safety.state()["pauses"]}


@router.put(
    "/clusters/{cluster_id}/pause",
    response_model=PauseOut,
    responses=error_responses(401, 403, 404, 422),
)
def pause_cluster(cluster_id: ClusterId, body: PauseIn, who: Admin, safety: Safety) -> dict[str, Any]:
    """Stop automatic activation in one cluster, like ``PUT /pause`` for the fleet."""
    scope = _cluster_scope(cluster_id)
    return pause_as_dict(safety.pause(scope, body.reason, who.name, _expiry(body, safety)))


@router.delete(
    "/clusters/{cluster_id}/pause",
    response_model=PauseOut,
    responses=error_responses(401, 403, 404, 422),
)
def resume_cluster(cluster_id: ClusterId, who: Admin, views: Views, safety: Safety) -> dict[str, Any]:
    """Lift a cluster's pause (404 naming ``cluster_id`` for an unknown cluster, else ``not_paused``)."""
    scope = _cluster_scope(cluster_id)
    views.get_cluster(scope)
    return _resume(safety, scope, who.name)


@router.post(
    "/hosts/{host_id}/quarantine/clear",
    response_model=HoldsCleared,
    tags=["hosts"],
    responses=error_responses(401, 403, 404, 422),
)
def clear_quarantine(host_id: HostId, who: Admin, safety: Safety) -> dict[str, Any]:
    """Take a host out of flap quarantine and reset its backoff; answer what they were.

    The next tick activates it again if it is healthy (and nothing else holds it back).
    """
    previous = safety.clear_holds(host_id, who.name, quarantine=True)
    return {"host_id": host_id, "cleared": "quarantine_and_backoff", "previous": previous}


@router.post(
    "/hosts/{host_id}/backoff/reset",
    response_model=HoldsCleared,
    tags=["hosts"],
    responses=error_responses(401, 403, 404, 422),
)
def reset_backoff(host_id: HostId, who: Admin, safety: Safety) -> dict[str, Any]:
    """Forget a host's failed automatic activations: no wait before the next attempt.

    A quarantine stays; clear it with ``POST /hosts/{id}/quarantine/clear``.
    """
    previous = safety.clear_holds(host_id, who.name, quarantine=False)
    return {"host_id": host_id, "cleared": "backoff", "previous": previous}


@router.get("/safety", response_model=SafetyState, responses=error_responses(401))
def safety_state(_: Viewer, safety: Safety, views: Views) -> dict[str, Any]:
    """What gates automatic activation now.

    The observer's gate and counts as of the last full tick, the pauses in force, activations
    queued or running per cluster, and the open incidents (many hosts of a cluster out for one
    storage domain or network), and each cluster's health: hosts up of all, its cap.
    """
    return {**safety.state(), "clusters": views.cluster_health()}
