"""One beat, guaranteed: two real ``celery beat`` processes, one leader lock in Redis.

No worker runs here, so every tick beat sends stays in the broker's ``monitoring`` list, where
the test counts them: about one per interval means one beat is sending, not two.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from autorecovery.adapters import keys
from tests.support.processes import start_beat, wait_for
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

INTERVAL_S = 1.0
LOCK_TIMEOUT_S = 4.0
ACQUIRED = "Acquired lock"


def _ticks_queued(broker: redis.Redis) -> int:
    """Ticks in the monitoring queue (beat sends housekeeping runs there too)."""
    messages = [json.loads(raw) for raw in broker.lrange("monitoring", 0, -1)]
    return sum(m["headers"]["task"] == "autorecovery.monitoring_tick" for m in messages)


def ticks_sent(broker: redis.Redis, seconds: float) -> int:
    """Count the ticks added to the monitoring queue over ``seconds``."""
    before = _ticks_queued(broker)
    time.sleep(seconds)
    return _ticks_queued(broker) - before


def test_a_second_beat_waits_and_takes_over_when_the_leader_dies(
    servers: Servers, logs: Path, app_module: Any, deps: Any
) -> None:
    env = servers.env(
        AUTORECOVERY_TICK_INTERVAL_S=str(INTERVAL_S), AUTORECOVERY_BEAT_LOCK_TIMEOUT_S=str(LOCK_TIMEOUT_S)
    )
    broker = redis.Redis.from_url(servers.broker_url)
    beats = [start_beat(env, logs, name=f"beat{i}") for i in range(2)]
    try:
        wait_for(lambda: any(ACQUIRED in b.log() for b in beats), 30, "a beat to take the lock")
        leader, waiting = sorted(beats, key=lambda b: ACQUIRED not in b.log())
        time.sleep(2 * INTERVAL_S)
        sent = ticks_sent(broker, 8 * INTERVAL_S)
        assert 6 <= sent <= 10, f"{sent} ticks in 8 intervals: expected about 8 (one beat)"
        assert ACQUIRED not in waiting.log()
        seen = float(deps.redis.get(keys.beat_heartbeat()))
        assert time.time() - seen < 3 * INTERVAL_S + 1

        os.killpg(leader.popen.pid, signal.SIGKILL)  # no clean exit: the lock is not released
        killed_at = time.monotonic()
        wait_for(lambda: ACQUIRED in waiting.log(), LOCK_TIMEOUT_S + 10, "the second beat to take over")
        took_s = time.monotonic() - killed_at
        # The lock expires LOCK_TIMEOUT_S after its last renewal; the waiting beat retries every
        # loop interval (at most LOCK_TIMEOUT_S / 3).
        assert took_s <= LOCK_TIMEOUT_S + LOCK_TIMEOUT_S / 3 + 1, took_s
        time.sleep(INTERVAL_S)
        sent = ticks_sent(broker, 5 * INTERVAL_S)
        assert 3 <= sent <= 7, f"{sent} ticks in 5 intervals after the takeover"
    finally:
        for beat in beats:
            beat.stop()
        broker.close()
        app_module.app.control.purge()


def test_beat_is_configured_in_the_app(app_module: Any) -> None:
    """`celery -A workers beat` needs no -S: the app names the scheduler and its lock."""
    conf = app_module.app.conf
    assert conf.beat_scheduler == "workers.beat:Scheduler"
    assert conf.redbeat_key_prefix == keys.beat_prefix()
    assert conf.beat_max_loop_interval * 3 <= conf.redbeat_lock_timeout


