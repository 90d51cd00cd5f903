"""Storage domains: list, show, activate, autorecovery flag and maintenance.

Reads are a viewer's; every write is an admin's and is audited with the token's name.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Admin, Storage, StorageDomainId, Viewer, error_responses
from api.responses import StorageActivationOut, StorageDomainDetail, StorageDomainList
from api.schemas import AutorecoveryIn, MaintenanceIn

router = APIRouter(tags=["storage domains"])


@router.get("/storage-domains", response_model=StorageDomainList, responses=error_responses(401))
def list_domains(_: Viewer, storage: Storage) -> dict[str, Any]:
    """List every storage domain by id, with its status and autorecovery flag."""
    return {"storage_domains": storage.list()}


@router.get(
    "/storage-domains/{storage_domain_id}",
    response_model=StorageDomainDetail,
    responses=error_responses(401, 404, 422),
)
def show_domain(storage_domain_id: StorageDomainId, _: Viewer, storage: Storage) -> dict[str, Any]:
    """Show a storage domain: status, why, its clusters and the activation in flight, if any."""
    return storage.get(storage_domain_id)


@router.post(
    "/storage-domains/{storage_domain_id}/activate",
    status_code=202,
    response_model=StorageActivationOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
def activate_domain(storage_domain_id: StorageDomainId, who: Admin, storage: Storage) -> dict[str, Any]:
    """Activate a storage domain now (also out of maintenance), whatever its autorecovery flag.

    ``autorecovery.activate_storage_domain`` runs it under the domain's lock and fencing token:
    the agents of hosts that reach the domain are asked to connect it, and it is active once
    one succeeds. Answers 202 with the Celery task id (equal to the activation id); 409 when
    the domain is already active or another activation of it is queued or running.
    """
    activation_id = storage.request_activation(storage_domain_id, who.name)
    return {
        "task_id": activation_id,
        "activation_id": activation_id,
        "storage_domain_id": storage_domain_id,
        "state": "queued",
    }


@router.put(
    "/storage-domains/{storage_domain_id}/autorecovery",
    responses=error_responses(401, 403, 404, 422),
)
def set_autorecovery(
    storage_domain_id: StorageDomainId, body: AutorecoveryIn, who: Admin, storage: Storage
) -> dict[str, Any]:
    """Turn the domain's automatic reactivation on or off (audited with the caller as actor)."""
    storage.set_autorecovery(storage_domain_id, body.enabled, who.name)
    return {"storage_domain_id": storage_domain_id, "autorecovery": body.enabled}


@router.post(
    "/storage-domains/{storage_domain_id}/maintenance",
    responses=error_responses(401, 403, 404, 409, 422),
)
def set_maintenance(
    storage_domain_id: StorageDomainId, who: Admin, storage: Storage, body: MaintenanceIn | None = None
) -> dict[str, Any]:
    """Put a domain in maintenance: monitoring never takes it out, only an admin's activation.

    409 while an activation of the domain is queued or running.
    """
    reason = body.reason if body else None
    storage.set_maintenance(storage_domain_id, who.name, reason)
    detail = reason or "set by an admin"
    return {"storage_domain_id": storage_domain_id, "status": "maintenance", "detail": detail}
