"""The worker's broker consumer, surviving a Redis broker that goes away under unacked tasks.

Celery 5.7 closes the broker connection after collecting it when the broker is lost. On the Redis
transport, closing the default channel restores the unacknowledged (``acks_late``) messages, and
``collect()`` has already cleared the transport's client: kombu 5.7 then raises
``AttributeError: 'NoneType' object has no attribute 'hostname'``, which is not a connection error,
so the worker's main process exits "Unrecoverable error" instead of reconnecting (seen when Redis
was killed under running activations: ``tests/integration/test_restarts.py``). The messages it
would restore stay in the broker's unacked set, which the visibility timeout gives back anyway.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery.worker.consumer import Consumer

log = logging.getLogger(__name__)


def tolerant(close: Callable[[], object]) -> Callable[[], None]:
    """``close`` of a broker connection that ``collect()`` already took apart, never failing on that."""

    def close_collected() -> None:
        try:
            close()
        except AttributeError as exc:  # the collected transport has no client left (kombu 5.7)
            log.warning("lost broker connection closed (%s); reconnecting", exc)

    return close_collected


class BrokerLossConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, whose close of a lost broker connection cannot kill the worker."""

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        if self.connection is not None:
            self.connection.close = tolerant(self.connection.close)
        super().on_connection_error_after_connected(exc)
