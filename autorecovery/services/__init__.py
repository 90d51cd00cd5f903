"""Services: load, lock, decide (pure), act, record. Dependencies arrive as arguments."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock, in UTC."""
    return datetime.now(UTC)


class Enqueuer(Protocol):
    """Sends an activation to the workers (Celery in production); the task id is its id."""

    def __call__(self, activation_id: str, object_id: str, trigger: str, actor: str, /) -> None:
        """Queue the activation of a host (or a storage domain); raise BrokerUnavailable."""
        ...
