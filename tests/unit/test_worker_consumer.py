"""The worker's consumer survives closing a broker connection that was lost (celery 5.7, kombu 5.7)."""

from __future__ import annotations

import os
import sys
from types import ModuleType

import pytest
from celery.worker.consumer import Consumer

from autorecovery.settings import Settings


@pytest.fixture
def consumer_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``workers.consumer``; importing ``workers`` builds an app, which needs a broker URL."""
    if "workers" not in sys.modules and not (
        os.environ.get("AUTORECOVERY_BROKER_URL") or os.environ.get("AUTORECOVERY_REDIS_URL")
    ):
        monkeypatch.setenv("AUTORECOVERY_BROKER_URL", "memory://")
    import workers.consumer

    return workers.consumer


def test_the_app_runs_the_tolerant_consumer(consumer_module: ModuleType) -> None:
    from workers import make_app

    app = make_app(Settings(redis_url="redis://127.0.0.1:9/0"))
    assert app.conf.worker_consumer == "workers.consumer:BrokerLossConsumer"
    assert app.conf.worker_consumer.rpartition(":")[2] in vars(consumer_module)


def test_closing_a_collected_connection_does_not_raise(consumer_module: ModuleType) -> None:
    tolerant = consumer_module.tolerant
    calls: list[str] = []

    def close() -> None:
        calls.append("close")
        raise AttributeError("'NoneType' object has no attribute 'hostname'")

    tolerant(close)()  # what kombu 5.7 raises from the collected transport: logged, not raised
    assert calls == ["close"]


def test_other_errors_still_reach_celery(consumer_module: ModuleType) -> None:
    tolerant = consumer_module.tolerant

    def close() -> None:
        raise ConnectionError("refused")

    with pytest.raises(ConnectionError):  # celery's ignore_errors handles connection errors
        tolerant(close)()


def test_the_consumer_wraps_the_close_before_celery_closes(
    consumer_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker_loss_consumer = consumer_module.BrokerLossConsumer
    closed: list[str] = []

    class Connection:
        def close(self) -> None:
            closed.append("close")
            raise AttributeError("'NoneType' object has no attribute 'hostname'")

    class Probe(broker_loss_consumer):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:  # no broker, no blueprint: only the method under test
            self.connection = Connection()

    def celery_part(self: Consumer, exc: Exception) -> None:
        self.connection.close()  # what celery 5.7 does with the collected connection

    monkeypatch.setattr(Consumer, "on_connection_error_after_connected", celery_part)
    Probe().on_connection_error_after_connected(ConnectionError("lost"))  # raised before the fix
    assert closed == ["close"]
