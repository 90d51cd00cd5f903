"""Beat's scheduler: celery-redbeat's leader lock in Redis, plus a heartbeat; it outlives Redis.

Only the beat holding the lock runs its loop; a second one waits in ``beat_init`` until the
lock expires (``AUTORECOVERY_BEAT_LOCK_TIMEOUT_S`` after the leader stopped renewing it).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis
from redis.exceptions import LockNotOwnedError
from redis.lock import Lock

from autorecovery.adapters import keys

log = logging.getLogger(__name__)

HEARTBEAT_TTL_S = 24 * 3600
#: The last run given to schedule entries Redis lost: due at once, not one interval later.
LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
#: Entries sent more often than this (ticks, housekeeping) are the ones made due at once.
DUE_AT_ONCE_UP_TO = timedelta(hours=1)
#: The app setting naming this beat's heartbeat file (``Settings.beat_heartbeat_path``).
HEARTBEAT_FILE_CONF = "autorecovery_beat_heartbeat_file"


class Scheduler(RedBeatScheduler):  # type: ignore[misc]
    """RedBeat's scheduler that survives its Redis and records, each loop, that it is alive.

    RedBeat's own loop lets a Redis error (or a lost lock) escape, and beat exits. Here a loop
    that cannot reach Redis logs it and tries again after one loop interval; a lock lost
    meanwhile (expired, or Redis restarted empty) is taken again without waiting when free, or
    waited for when another beat took it; and the static schedule is written again, since a
    Redis that restarted empty lost it. The broker may be away too: sending a due task that
    fails is logged by RedBeat and the entry runs at its next time.
    """

    lock: Lock | None = None

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        # Beat sends only ticks, housekeeping and the daily pruning: no task-sent event for them,
        # so Flower's bounded task list is not filled with them (the workers send none either).
        app.conf.task_send_sent_event = False
        self._redis_lost = False
        self.heartbeat_file = Path(app.conf[HEARTBEAT_FILE_CONF])
        self.heartbeat_file.unlink(missing_ok=True)  # a restarted beat's file is not ours
        super().__init__(app, *args, **kwargs)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Hold the lock, send what is due, write the heartbeats; never raise for Redis.

        The local heartbeat file is written every loop, Redis or not: the process is alive.
        """
        wait_s = self._tick_with_redis()
        try:
            self.heartbeat_file.write_text(f"{time.time():.3f}")
        except OSError as exc:
            log.warning("beat: cannot write %s: %s", self.heartbeat_file, exc)
        return wait_s

    def _tick_with_redis(self) -> float:
        try:
            if not self._lead():
                return float(self.max_interval)
            if self._redis_lost:
                self._restore_schedule()
                self._redis_lost = False
                log.warning("beat: Redis is back; schedule checked, sending again")
            wait_s = self._send_due()
            get_redis(self.app).set(keys.beat_heartbeat(), f"{time.time():.3f}", ex=HEARTBEAT_TTL_S)
        except redis.RedisError as exc:
            if not self._redis_lost:
                log.error("beat: Redis unavailable (%s); retrying every %ss", exc, self.max_interval)
            self._redis_lost = True
            return float(self.max_interval)
        return wait_s

    def _restore_schedule(self) -> None:
        """Write the schedule again; frequent entries Redis lost (it restarted empty) are due at once.

        RedBeat would date a lost entry's last run now, so the ticks would wait one more
        interval; the daily pruning keeps that default.
        """
        conf = self.app.redbeat_conf
        lost = not get_redis(self.app).exists(conf.schedule_key)
        self.setup_schedule()  # keeps the entries' last run when Redis still has them
        if lost:
            for name in conf.schedule:
                entry = self.Entry.from_key(self.Entry.generate_key(self.app, name), app=self.app)
                if getattr(entry.schedule, "run_every", DUE_AT_ONCE_UP_TO) < DUE_AT_ONCE_UP_TO:
                    entry.reschedule(LONG_AGO)

    def _send_due(self) -> float:
        """Send the entries that are due; return the seconds until the next one (RedBeat's loop)."""
        remaining = [float(self.max_interval)]
        for entry in self.schedule.values():
            next_s = self.maybe_due(entry, **self._maybe_due_kwargs)
            if next_s:
                remaining.append(float(next_s))
        return min(remaining)

    def _lead(self) -> bool:
        """True when this beat holds the leader lock: renewed if held, else taken if free."""
        if not self.lock_key:
            return True
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))
                return True
            except LockNotOwnedError:
                log.warning("beat: leader lock lost (expired, or Redis restarted); taking it again")
                self.lock = None
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)  # extend to, not by
        if not lock.acquire(blocking=False):
            return False  # another beat leads; it is tried again next loop
        self.lock = lock
        log.info("beat: Acquired lock")
        return True

    def close(self) -> None:
        """Release the lock if Redis is there to release it; it expires otherwise."""
        try:
            super().close()
        except redis.RedisError as exc:
            log.warning("beat: lock not released (%s); it expires by itself", exc)


def beat_config(
    redis_url: str, tick_interval_s: float, lock_timeout_s: float, heartbeat_file: Path
) -> dict[str, Any]:
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
        HEARTBEAT_FILE_CONF: str(heartbeat_file),
    }
