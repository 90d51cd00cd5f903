"""Bulk push of monitoring reports, for an aggregator that pushes many hosts at once."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import Intake, Pusher, error_responses
from api.responses import ReportsOut
from api.schemas import ReportsIn

router = APIRouter(tags=["hosts"])

#: The whole body of a bulk push: about 1,000 reports of a few KiB each.
MAX_BULK_BYTES = 4 * 1024 * 1024


@router.post(
    "/reports",
    response_model=ReportsOut,
    responses=error_responses(401, 403, 413, 422),
    max_body_size=MAX_BULK_BYTES,
)
def push_reports(body: ReportsIn, who: Pusher, intake: Intake) -> dict[str, Any]:
    """Take many hosts' reports in one transaction; answer per report: accepted, or refused and why.

    An admin may push for any host; a reporter token only for the hosts it is bound to (the
    others are refused with ``forbidden``). A refused report stores nothing and leaves a
    ``report_rejected`` audit entry when it names a host the caller may push for.
    """
    results, stored = intake.receive_many(body.reports, who.name, who.can_report)
    accepted = sum(r.accepted for r in results)
    return {
        "accepted": accepted,
        "refused": len(results) - accepted,
        "stored": stored,
        "results": [r.as_dict() for r in results],
    }
