"""Beat's schedule, as data: entry name -> task name, schedule and expiry."""

from __future__ import annotations

from typing import Any


def beat_schedule(tick_interval_s: float) -> dict[str, dict[str, Any]]:
    """Return the schedule; a tick that waited longer than one interval is dropped, not run."""
    return {
        "monitoring-tick": {
            "task": "autorecovery.monitoring_tick",
            "schedule": tick_interval_s,
            "options": {"queue": "monitoring", "expires": tick_interval_s},
        },
    }
