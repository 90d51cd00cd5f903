"""Beat's liveness, for ``autorecovery beat-alive`` (the Kubernetes liveness probe).

The heartbeat in Redis says only that *a* beat leads; each beat process also keeps its own,
in a file it writes each loop (``workers.beat.Scheduler``) and removes at start: the file
``Settings.beat_heartbeat_path`` names (``AUTORECOVERY_BEAT_HEARTBEAT_FILE``), which the probe
reads too, so that two beats on one machine each have theirs.
"""

from __future__ import annotations

from pathlib import Path


def read_heartbeat(path: Path) -> float | None:
    """When the beat writing ``path`` last ran its loop (None: never, or not a time)."""
    try:
        return float(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def liveness(
    local_at: float | None, shared_at: float | None, now: float, max_age_s: float, takeover_s: float
) -> str | None:
    """Say why this beat process is not alive, or None when it is.

    Args:
        local_at: when this process last ran its loop (None: it never led: a standby, or starting).
        shared_at: when any beat last ran its loop (the heartbeat in Redis; None: never).
        max_age_s: the longest a leading beat's loop may take.
        takeover_s: how long after the leader's last loop a standby must have taken over.
    """
    if local_at is not None:
        age_s = now - local_at
        return (
            None if age_s <= max_age_s else f"its loop last ran {age_s:.0f} s ago (limit {max_age_s:.0f} s)"
        )
    if shared_at is None or now - shared_at <= takeover_s:
        return None
    return f"no beat ran its loop for {now - shared_at:.0f} s and this standby has not taken over"
