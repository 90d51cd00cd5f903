"""Beat's scheduler: celery-redbeat's leader lock in Redis, plus a heartbeat for /metrics.

Only the beat holding the lock runs its loop; a second one waits in ``beat_init`` until the
lock expires (``AUTORECOVERY_BEAT_LOCK_TIMEOUT_S`` after the leader stopped renewing it).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redbeat import RedBeatScheduler
from redbeat.schedulers import get_redis

from autorecovery.adapters import keys
from autorecovery.beat_liveness import LOCAL_HEARTBEAT

log = logging.getLogger(__name__)

HEARTBEAT_TTL_S = 24 * 3600


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat's scheduler that also records, each loop, that the leading beat is alive."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        # Beat sends only ticks and the daily pruning: no task-sent event for them, so Flower's
        # bounded task list is not filled with ticks (the workers send none for them either).
        app.conf.task_send_sent_event = False
        LOCAL_HEARTBEAT.unlink(missing_ok=True)  # a restarted container's file is not ours
        super().__init__(app, *args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Renew the lock, send what is due, then write the heartbeat."""
        wait_s: float = super().tick(*args, **kwargs)
        try:
            get_redis(self.app).set(keys.beat_heartbeat(), f"{time.time():.3f}", ex=HEARTBEAT_TTL_S)
        except redis.RedisError as exc:
            log.warning("beat: cannot write the heartbeat: %s", exc)
        try:
            LOCAL_HEARTBEAT.write_text(f"{time.time():.3f}")
        except OSError as exc:
            log.warning("beat: cannot write %s: %s", LOCAL_HEARTBEAT, exc)
        return wait_s


def beat_config(redis_url: str, tick_interval_s: float, lock_timeout_s: float) -> dict[str, Any]:
    """Return the Celery settings that make ``celery -A workers beat`` use this scheduler.

    The loop runs at least three times per lock timeout, so the leader renews its lock in time
    and a waiting beat retries often enough to take over soon after the lock expires.
    """
    return {
        "beat_scheduler": "workers.beat:Scheduler",
        "beat_max_loop_interval": max(1.0, min(tick_interval_s, lock_timeout_s / 3)),
        "redbeat_redis_url": redis_url,
        "redbeat_key_prefix": keys.beat_prefix(),
        "redbeat_lock_timeout": int(lock_timeout_s),
        "redbeat_redis_options": {},
    }
