"""Queue depth for /metrics on a real broker: one kept connection, a cache, missing queues as 0.

Redis always (the suite's broker); RabbitMQ when AUTORECOVERY_TEST_AMQP_URL names one (as in
test_rabbitmq.py: an optional broker).
"""

from __future__ import annotations

import os
import uuid

import pytest
from kombu import Connection
from kombu.entity import Queue

from autorecovery.adapters.queues import QueueDepth
from models.errors import BrokerUnavailable
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

AMQP_URL = os.environ.get("AUTORECOVERY_TEST_AMQP_URL")


def publish(url: str, queue: str, n: int) -> None:
    with Connection(url) as conn:  # type: ignore[no-untyped-call]
        q = Queue(queue, durable=False, auto_delete=False)  # type: ignore[no-untyped-call]
        producer = conn.Producer()
        for i in range(n):
            producer.publish({"i": i}, routing_key=queue, declare=[q], serializer="json")


def delete(url: str, queue: str) -> None:
    with Connection(url) as conn:  # type: ignore[no-untyped-call]
        Queue(queue)(conn.default_channel).delete()  # type: ignore[no-untyped-call]


def check(url: str) -> None:
    queue, missing = f"depth-{uuid.uuid4().hex[:8]}", f"missing-{uuid.uuid4().hex[:8]}"
    publish(url, queue, 3)
    try:
        now = [0.0]
        depth = QueueDepth(url, [queue, missing], cache_s=10.0, clock=lambda: now[0])
        assert depth.read() == {queue: 3, missing: 0}
        publish(url, queue, 1)
        assert depth.read() == {queue: 3, missing: 0}  # cached
        now[0] = 11.0
        assert depth.read() == {queue: 4, missing: 0}
        assert depth.reads == 2
        depth.close()
    finally:
        delete(url, queue)


def test_redis_queue_depth_reuses_one_connection(servers: Servers) -> None:
    check(servers.broker_url)
    depth = QueueDepth(servers.broker_url, ["monitoring"], cache_s=0)
    depth.read()
    first = depth._conn
    for _ in range(5):
        depth.read()
    assert depth._conn is first  # never one new connection per scrape
    depth.close()


@pytest.mark.skipif(not AMQP_URL, reason="AUTORECOVERY_TEST_AMQP_URL is not set")
def test_rabbitmq_queue_depth() -> None:
    assert AMQP_URL is not None
    check(AMQP_URL)


def test_an_unreachable_broker_is_a_transient_error() -> None:
    depth = QueueDepth("redis://127.0.0.1:1/0", ["monitoring"], timeout_s=0.5)
    with pytest.raises(BrokerUnavailable):
        depth.read()
