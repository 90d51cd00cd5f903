"""Clusters and their requirements, in the registration shape of agent protocol v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from api.deps import Admin, ClusterId, Fleet, Onboarding, Viewer, Views, error_responses
from api.responses import ClusterOut
from api.schemas import ClusterIn
from autorecovery.services.views import cluster_as_dict
from models.domain import Cluster

router = APIRouter(tags=["clusters"])


@router.post(
    "/clusters",
    status_code=201,
    response_model=ClusterOut,
    responses={200: {"model": ClusterOut, "description": "updated"}, **error_responses(401, 403, 422)},
)
def register_cluster(body: ClusterIn, who: Admin, fleet: Fleet, response: Response) -> dict[str, Any]:
    """Create a cluster (201) or replace an existing cluster's requirements (200)."""
    cluster = Cluster(
        id=body.id,
        required_networks=frozenset(body.required_networks),
        storage_domains=frozenset(body.storage_domains),
        min_version=body.min_version,
        cpu_flags=frozenset(body.cpu_flags),
    )
    if not fleet.register_cluster(cluster, who.name):
        response.status_code = 200
    return cluster_as_dict(cluster)


@router.get("/clusters", response_model=list[ClusterOut], responses=error_responses(401))
def list_clusters(_: Viewer, views: Views) -> list[dict[str, Any]]:
    """List every cluster, by id."""
    return views.list_clusters()


@router.get("/clusters/{cluster_id}", response_model=ClusterOut, responses=error_responses(401, 404, 422))
def show_cluster(cluster_id: ClusterId, _: Viewer, views: Views) -> dict[str, Any]:
    """Show one cluster's requirements."""
    return views.get_cluster(cluster_id)


@router.delete(
    "/clusters/{cluster_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404, 409, 422),
)
def delete_cluster(cluster_id: ClusterId, who: Admin, onboarding: Onboarding) -> Response:
    """Delete a cluster (and its pause); refused (409) while it has hosts."""
    onboarding.delete_cluster(cluster_id, who.name)
    return Response(status_code=204)
