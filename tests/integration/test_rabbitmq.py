"""The same loop with RabbitMQ as the broker (PostgreSQL and Redis as usual).

Runs when AUTORECOVERY_TEST_AMQP_URL names a RabbitMQ (CI sets it); RabbitMQ is an optional
broker, so on a machine without one this test is skipped, never the Redis-broker suite.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.integration.conftest import statuses
from tests.support.processes import start_worker, wait_for


def wait_for_or_not(predicate: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``predicate`` for at most ``timeout_s``; whether it came true, the caller checks."""
    with contextlib.suppress(AssertionError):
        wait_for(predicate, timeout_s, "a change")

AMQP_URL = os.environ.get("AUTORECOVERY_TEST_AMQP_URL")


@pytest.mark.skipif(not AMQP_URL, reason="AUTORECOVERY_TEST_AMQP_URL is not set")
def test_fleet_recovers_through_a_rabbitmq_broker(
    sim: Any, servers: Any, logs: Path, deps: Any
) -> None:
    assert AMQP_URL is not None
    env = servers.env(AUTORECOVERY_BROKER_URL=AMQP_URL)
    producer = Celery("rabbit-test", broker=AMQP_URL)
    producer.conf.update(task_serializer="json", accept_content=["json"])
    client = sim(hosts=3)
    worker = start_worker(env, logs, name="rabbit-worker")
    try:
        producer.control.purge()

        def ticking_until(done: Callable[[], bool], timeout_s: float, what: str) -> None:
            # A tick per second, as beat would: one sent within the same interval as the previous
            # one is a duplicate and stops, so a single tick could go unseen.
            deadline = time.monotonic() + timeout_s
            while not done():
                assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
                producer.send_task("autorecovery.monitoring_tick", queue="monitoring")
                wait_for_or_not(done, 1.0)

        ticking_until(lambda: set(statuses(deps).values()) == {"up"}, 30, "recovery over RabbitMQ")
        assert "amqp://" in worker.log()
        client.inject("kvm_down", hosts=["h-0002"])
        ticking_until(lambda: statuses(deps)["h-0002"] == "non_operational", 20, "the fault seen")
        client.clear(hosts=["h-0002"])
        ticking_until(lambda: statuses(deps)["h-0002"] == "up", 20, "recovery after the fault")
        assert client.overlaps()["count"] == 0
    finally:
        worker.stop()
        producer.close()
