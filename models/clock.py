"""How a time is said to an operator: in UTC, to the second, with the zone named."""

from __future__ import annotations

from datetime import UTC, datetime


def stamp(at: datetime) -> str:
    """``YYYY-MM-DD HH:MM:SS UTC``; a naive time is taken as UTC (the store's times are zoned)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
