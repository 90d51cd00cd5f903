"""Beat's schedule, as data: entry name -> task name, schedule and expiry."""

from __future__ import annotations

from typing import Any

PRUNE_INTERVAL_S = 24 * 3600.0


def beat_schedule(tick_interval_s: float) -> dict[str, dict[str, Any]]:
    """Return the schedule; a tick that waited longer than one interval is dropped, not run.

    Housekeeping (reaping, re-sends, fence pushes) runs beside the ticks, as often, in its own
    task: slow agents it calls never delay a tick.

    The daily pruning deletes what is older than the retention settings (``autorecovery.prune``).
    """
    return {
        "monitoring-tick": {
            "task": "autorecovery.monitoring_tick",
            "schedule": tick_interval_s,
            "options": {"queue": "monitoring", "expires": tick_interval_s},
        },
        "housekeeping": {
            "task": "autorecovery.housekeeping",
            "schedule": tick_interval_s,
            "options": {"queue": "monitoring", "expires": tick_interval_s},
        },
        "prune": {
            "task": "autorecovery.prune",
            "schedule": PRUNE_INTERVAL_S,
            "options": {"queue": "monitoring", "expires": 3600.0},
        },
    }
