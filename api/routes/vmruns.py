"""VM run results from schedulers, and the placement ranking they feed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Admin, ClusterId, Viewer, VmRuns, error_responses
from api.responses import PlacementOut, VmRunOut
from api.schemas import VmRunIn
from models.placement import Attempt

router = APIRouter(tags=["placement"])


@router.post(
    "/vm-runs",
    status_code=201,
    response_model=VmRunOut,
    responses=error_responses(401, 403, 413, 422),
)
def report_vm_run(body: VmRunIn, who: Admin, vmruns: VmRuns) -> dict[str, Any]:
    """Record where a VM was tried and where it started; charge the hosts that failed it.

    A host is charged when the VM failed on it and then started on another host; at the
    configured number of charges within the window it goes to ``error`` for a while (audited).
    All or nothing: an unknown host in any attempt refuses the run (422 naming
    ``attempts[i].host``) and stores nothing.
    """
    attempts = [Attempt(a.host, a.ok, a.error) for a in body.attempts]
    return vmruns.record(body.vm_id, attempts, who.name)


@router.get(
    "/clusters/{cluster_id}/placement",
    response_model=PlacementOut,
    tags=["clusters"],
    responses=error_responses(401, 404, 422),
)
def placement(cluster_id: ClusterId, _: Viewer, vmruns: VmRuns) -> dict[str, Any]:
    """Rank the cluster's up hosts best first for the next VM, each score explained.

    The score adds free memory, takes off running VMs and a penalty per recent charge (VMs
    that failed on the host and started elsewhere), so a lightly loaded host that keeps failing
    its VMs does not stay first. Hosts in ``error`` or otherwise not up are left out.
    """
    return {"cluster": cluster_id, "hosts": vmruns.placement(cluster_id)}
