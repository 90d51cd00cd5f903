"""Manual activation: the same ``init_vds_on_up`` task, lock and fencing token as the tick's."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from api.deps import Admin, Fleet, HostId, Views, error_responses
from api.responses import ActivationOut
from api.schemas import ActivateQuery
from models.domain import IN_FLIGHT_STATES

router = APIRouter(tags=["hosts"])

POLL_S = 0.2


@router.post(
    "/hosts/{host_id}/activate",
    status_code=202,
    response_model=ActivationOut,
    responses={
        200: {"model": ActivationOut, "description": "finished within wait_s"},
        **error_responses(401, 403, 404, 409, 422, 503),
    },
)
async def activate(
    host_id: HostId,
    q: Annotated[ActivateQuery, Query()],
    who: Admin,
    fleet: Fleet,
    views: Views,
    response: Response,
) -> dict[str, Any]:
    """Activate a host now, whatever its autorecovery flag says; the caller is the actor.

    Answers 202 with the Celery task id (equal to the activation id). With ``wait_s``, waits
    up to that long for the activation to end and answers 200 with its outcome (202 if it is
    still running then). 409 names the holder while another activation holds the host, says
    the host is already up, or lists the problems its fresh report shows (``host_has_problems``):
    ``force=true`` inits such a host anyway, audited as ``activation_forced``.
    """
    activation_id = await run_in_threadpool(fleet.activate, host_id, who.name, force=q.force)
    record: dict[str, Any] = {"state": "queued"}
    deadline = time.monotonic() + q.wait_s
    while q.wait_s > 0:
        found = await run_in_threadpool(views.activation, activation_id)
        record = found or record
        left = deadline - time.monotonic()
        if record["state"] not in IN_FLIGHT_STATES or left <= 0:
            break
        await asyncio.sleep(min(POLL_S, left))
    if record["state"] not in IN_FLIGHT_STATES:
        response.status_code = 200
    return {
        "task_id": activation_id,
        "activation_id": activation_id,
        "host_id": host_id,
        "state": record["state"],
        "outcome": record.get("outcome"),
        "reason": record.get("reason"),
        "detail": record.get("detail"),
    }
