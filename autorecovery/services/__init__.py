"""Services: load, lock, decide (pure), act, record. Dependencies arrive as arguments."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from autorecovery.ports import Enqueuer

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock, in UTC."""
    return datetime.now(UTC)


__all__ = ["Clock", "Enqueuer", "utcnow"]
