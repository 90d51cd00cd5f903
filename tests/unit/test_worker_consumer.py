"""The worker's consumer survives closing a broker connection that was lost (celery 5.7, kombu 5.7)."""

from __future__ import annotations

import pytest
from celery.worker.consumer import Consumer

from workers import app
from workers.consumer import BrokerLossConsumer, tolerant


def test_the_app_runs_the_tolerant_consumer() -> None:
    assert app.conf.worker_consumer == "workers.consumer:BrokerLossConsumer"


def test_closing_a_collected_connection_does_not_raise() -> None:
    calls: list[str] = []

    def close() -> None:
        calls.append("close")
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    tolerant(close)()  # what kombu 5.7 raises from the collected transport: logged, not raised
    assert calls == ["close"]


def test_other_errors_still_reach_celery() -> None:
    def close() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):  # celery's ignore_errors handles connection errors
        tolerant(close)()


def test_the_consumer_wraps_the_close_before_celery_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []

    class Connection:
        def close(self) -> None:
            closed.append("close")
            raise AttributeError("'NoneType' object has no attribute 'hostname'")

    class Probe(BrokerLossConsumer):
        def __init__(self) -> None:  # no broker, no blueprint: only the method under test
            self.connection = Connection()

    def celery_part(self: BrokerLossConsumer, exc: Exception) -> None:
        self.connection.close()  # what celery 5.7 does with the collected connection

    monkeypatch.setattr(Consumer, "on_connection_error_after_connected", celery_part)
    Probe().on_connection_error_after_connected(ConnectionError("lost"))  # raised before the fix
    assert closed == ["close"]
