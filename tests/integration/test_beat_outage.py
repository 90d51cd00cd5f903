"""Beat outlives its Redis: killed for 10 s under a running beat, ticks resume when it returns.

The test runs a Redis of its own for beat's schedule and leader lock (and the product's locks
and tick history), never the machine's. The broker stays on the session's Redis: a worker whose
Redis broker dies mid-acknowledgement can exit on a kombu race, which is not beat's to survive.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import redis

from autorecovery.adapters import keys
from tests.support.private_redis import PrivateRedis, private_redis
from tests.support.processes import start_beat, start_worker, wait_for

__all__ = ["private_redis"]  # the fixture

INTERVAL_S = 2.0
OUTAGE_S = 10.0


def _closed_since(client: redis.Redis, since: float) -> list[float]:
    """When the ticks that ran to their close after ``since`` finished (wall clock)."""
    try:
        found = [json.loads(raw) for raw in client.lrange(keys.tick_history(), 0, 99)]
    except redis.RedisError:
        return []
    return sorted(t["finished_at"] for t in found if t.get("skipped") is None and t["finished_at"] > since)


def test_beat_outlives_a_redis_outage_and_ticks_resume(
    sim: Any, servers: Any, logs: Path, private_redis: PrivateRedis
) -> None:
    env = servers.env(
        AUTORECOVERY_REDIS_URL=private_redis.url(0),
        AUTORECOVERY_TICK_INTERVAL_S=str(INTERVAL_S),
    )
    sim(hosts=2)
    client = redis.Redis.from_url(private_redis.url(0))
    worker = start_worker(env, logs, concurrency=2, name="beat-outage-worker")
    beat = start_beat(env, logs, name="beat-outage")
    try:
        wait_for(lambda: len(_closed_since(client, 0)) >= 2, 30, "ticks before the outage")
        private_redis.kill()
        time.sleep(OUTAGE_S)
        assert beat.popen.poll() is None, f"beat exited with Redis away:\n{beat.log()[-3000:]}"
        private_redis.start()  # empty: the schedule, the lock and the history are gone
        back = time.time()
        wait_for(lambda: bool(_closed_since(client, back)), 6 * INTERVAL_S, "a tick after Redis returned")
        first = _closed_since(client, back)[0]
        assert beat.popen.poll() is None
        assert first - back <= 2 * INTERVAL_S, f"first tick closed {first - back:.1f}s after Redis returned"
        wait_for(lambda: len(_closed_since(client, back)) >= 3, 4 * INTERVAL_S, "ticks every interval")
    finally:
        beat.stop()
        worker.stop()
        client.close()


def test_beat_outlives_a_broker_outage_and_sends_again(
    servers: Any, logs: Path, private_redis: PrivateRedis
) -> None:
    """The broker (a Redis of the test's own) killed for 10 s: beat stays up and sends again.

    No worker consumes: the ticks beat sends pile up in the broker's ``monitoring`` list.
    """
    env = servers.env(
        AUTORECOVERY_BROKER_URL=private_redis.url(1), AUTORECOVERY_TICK_INTERVAL_S=str(INTERVAL_S)
    )
    broker = redis.Redis.from_url(private_redis.url(1))
    beat = start_beat(env, logs, name="beat-broker-outage")

    def queued() -> int:
        try:
            return int(broker.llen("monitoring"))
        except redis.RedisError:
            return -1

    try:
        wait_for(lambda: queued() >= 2, 30, "ticks in the broker before the outage")
        private_redis.kill()
        time.sleep(OUTAGE_S)
        assert beat.popen.poll() is None, f"beat exited with the broker away:\n{beat.log()[-3000:]}"
        private_redis.start()  # empty
        back = time.monotonic()
        wait_for(lambda: queued() >= 1, 6 * INTERVAL_S, "a tick sent after the broker returned")
        sent_after_s = time.monotonic() - back
        assert beat.popen.poll() is None
        assert sent_after_s <= 2 * INTERVAL_S, (
            f"first tick sent {sent_after_s:.1f}s after the broker returned"
        )
    finally:
        beat.stop()
        broker.close()
