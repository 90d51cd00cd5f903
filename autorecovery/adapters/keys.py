"""Every Redis key this project uses, with its prefix; TTLs are set where the key is written."""

from __future__ import annotations

PREFIX = "autorecovery:"


def host_lock(host_id: str) -> str:
    """Key of the per-host activation lock."""
    return f"{PREFIX}lock:host:{host_id}"


def storage_domain_lock(sd_id: str) -> str:
    """Key of the per-storage-domain activation lock."""
    return f"{PREFIX}lock:sd:{sd_id}"


def last_tick() -> str:
    """Key holding the latest finished tick's summary (JSON), for tests, /readyz and the CLI."""
    return f"{PREFIX}tick:last"


def tick_history() -> str:
    """Key of the list of recent tick summaries, newest first (capped)."""
    return f"{PREFIX}tick:history"


def last_housekeeping() -> str:
    """Key holding the latest housekeeping run's summary (JSON), for tests and operators."""
    return f"{PREFIX}housekeeping:last"


def beat_prefix() -> str:
    """Prefix of beat's schedule and leader lock (celery-redbeat's keys)."""
    return f"{PREFIX}beat"


def beat_heartbeat() -> str:
    """Key holding when the leading beat last ran its loop (Unix time), for /metrics."""
    return f"{PREFIX}beat:heartbeat"


def queue_depth_cache() -> str:
    """Key caching the broker's queue lengths (JSON) between scrapes."""
    return f"{PREFIX}metrics:queue_depth"
