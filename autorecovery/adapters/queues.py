"""Lengths of the broker's queues (Redis lists or RabbitMQ queues), for ``/metrics``.

One connection is kept and reused, and the answer is cached for a few seconds, so that scrapes
(from several Prometheus servers, or a dashboard refreshing) never open a connection each.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence

from kombu.connection import Connection
from kombu.exceptions import OperationalError
from kombu.transport.virtual import Transport as VirtualTransport

from models.errors import BrokerUnavailable

log = logging.getLogger(__name__)


class QueueDepth:
    """Messages waiting in each queue, read on one kept connection and cached for ``cache_s``."""

    def __init__(
        self,
        url: str,
        queues: Sequence[str],
        *,
        cache_s: float = 15.0,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._queues = tuple(queues)
        self._cache_s = cache_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._lock = threading.Lock()
        self._conn: Connection | None = None
        self._cached: dict[str, int] | None = None
        self._read_at = -math.inf
        self.reads = 0

    def read(self) -> dict[str, int]:
        """Return queue name -> messages waiting (cached).

        Raises:
            BrokerUnavailable: the broker did not answer.
        """
        with self._lock:
            if self._cached is not None and self._clock() - self._read_at < self._cache_s:
                return self._cached
            found: dict[str, int] = {}
            conn = self._connection()
            try:
                for name in self._queues:
                    conn = self._connection()
                    found[name] = self._depth(conn, name)
            except (*conn.connection_errors, OperationalError, OSError) as exc:
                self._drop()
                raise BrokerUnavailable(f"cannot read the queue lengths: {exc}") from exc
            self.reads += 1
            self._cached, self._read_at = found, self._clock()
            return found

    def close(self) -> None:
        """Close the kept connection."""
        with self._lock:
            self._drop()

    def _connection(self) -> Connection:
        if self._conn is None:
            options = {"socket_timeout": self._timeout_s, "socket_connect_timeout": self._timeout_s}
            self._conn = Connection(  # type: ignore[no-untyped-call]
                self._url, connect_timeout=self._timeout_s, transport_options=options
            )
        return self._conn

    def _depth(self, conn: Connection, name: str) -> int:
        channel = conn.default_channel
        if isinstance(conn.transport, VirtualTransport):
            # Redis: a queue is a list that exists only while not empty, and declaring one
            # creates nothing, so an active declare just reads its length.
            return int(channel.queue_declare(queue=name).message_count)  # type: ignore[no-untyped-call]
        try:
            return int(channel.queue_declare(queue=name, passive=True).message_count)  # type: ignore[no-untyped-call]
        except conn.channel_errors:
            # AMQP: no such queue yet (no worker declared it): nothing waits. The broker closed
            # the channel, so drop the connection; the next read opens a fresh one.
            self._drop()
            return 0

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.release()  # type: ignore[no-untyped-call]
            except Exception as exc:  # closing a broken connection: nothing more to do
                log.debug("closing the queue-depth connection: %s", exc)
            self._conn = None
