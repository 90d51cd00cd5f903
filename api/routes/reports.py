"""Bulk push of monitoring reports, for an aggregator that pushes many hosts at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from api.deps import Intake, Pusher, error_responses
from api.responses import ReportsOut
from models.report_bulk import bulk_schema

router = APIRouter(tags=["hosts"])

#: The whole body of a bulk push: about 1,000 reports of a few KiB each.
MAX_BULK_BYTES = 4 * 1024 * 1024

_BULK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": bulk_schema()}},  # generated from ReportWire
    }
}


@router.post(
    "/reports",
    response_model=ReportsOut,
    openapi_extra=_BULK_BODY,
    responses=error_responses(401, 403, 413, 422),
    max_body_size=MAX_BULK_BYTES,
)
async def push_reports(request: Request, who: Pusher, intake: Intake) -> dict[str, Any]:
    """Take many hosts' reports in one transaction; answer per report: accepted, or refused and why.

    An admin may push for any host; a reporter token only for the hosts it is bound to (the
    others are refused with ``forbidden``). A refused report stores nothing and leaves a
    ``report_rejected`` audit entry when it names a host the caller may push for. An unusable
    envelope (not an object, no ``reports``, more than 1,000) is a 422 naming the field.
    """
    raw = await request.body()  # each report decoded by the report's one schema (models.report_wire)
    results, stored = await run_in_threadpool(intake.receive_many, raw, who.name, who.can_report)
    accepted = sum(r.accepted for r in results)
    return {
        "accepted": accepted,
        "refused": len(results) - accepted,
        "stored": stored,
        "results": [r.as_dict() for r in results],
    }
