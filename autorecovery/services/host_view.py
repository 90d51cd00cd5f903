"""The read view of one host's holds and cleanliness, so ``hosts show`` never looks stale.

A held host (quarantined, backing off, paused, in error) keeps the reason it went out with; next
to a clean report that reads as a contradiction unless the view says what holds it and when the
host was last clean.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from models.assessment import Assessment
from models.domain import Host, Report
from models.safety import Gates, host_holds


def hold_view(
    host: Host, report: Report | None, assessment: Assessment, row: Mapping[str, object], gates: Gates,
    now: datetime,
) -> dict[str, Any]:
    """Return the host view's ``last_clean_at`` and ``held_by``."""
    held = held_by(host, row, gates, now, assessment.agent_state_unwritable)
    return {"last_clean_at": last_clean_at(assessment, report, row), "held_by": held}


def last_clean_at(assessment: Assessment, report: Report | None, row: Mapping[str, object]) -> str | None:
    """When the host was last seen clean: its report's time if clean now, else when it stopped."""
    if report is not None and assessment.is_healthy:
        return report.reported_at.isoformat()
    stopped = row.get("last_clean_at")
    return stopped.isoformat() if isinstance(stopped, datetime) else None


def held_by(
    host: Host, row: Mapping[str, object], gates: Gates, now: datetime, state_unwritable: str | None = None
) -> list[dict[str, Any]]:
    """Return every hold in force on the host now: what it is, since and until when, and why.

    ``state_unwritable`` is the latest report's (the agent refuses every init meanwhile).
    """
    found: list[dict[str, Any]] = []

    def hold(kind: str, detail: str, since: datetime | None = None, until: datetime | None = None) -> None:
        found.append(
            {
                "hold": kind,
                "detail": detail,
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None,
            }
        )

    own = {
        "agent_fence_ahead": (
            str(row.get("agent_hold_detail") or "its agent claims a fence the product never issued"),
            None,
            None,
        ),
        "agent_state_unwritable": (f"its agent cannot persist its fence: {state_unwritable}", None, None),
        "maintenance": ("an admin put it in maintenance", host.status_changed_at, None),
        "autorecovery_off": ("autorecovery is off; only an admin activates it", None, None),
        "quarantine": (str(row.get("quarantine_reason") or "flapping"), host.quarantined_at, None),
        "error_period": ("VMs failed here, then started elsewhere", host.status_changed_at, host.error_until),
        "backoff": (f"{host.failures} failed attempt(s) in a row", None, host.next_attempt_at),
        "init_outcome_unknown": (
            "an earlier init's outcome was not seen and it may still run; no new init before then",
            None,
            host.init_hold_until,
        ),
    }
    for kind in host_holds(host, now, state_unwritable):
        hold(kind, *own[kind])
    pause = gates.pause_for(host.cluster_id, now)
    if pause is not None:
        hold("pause", pause.describe(), pause.created_at, pause.expires_at)
    if gates.observer_block:
        hold("observer", gates.observer_block)
    return found
