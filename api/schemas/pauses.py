"""Pauses: why, and until when (RFC 3339 with a zone, or a duration)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from pydantic import (
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from api.schemas.common import (
    Input,
    Text,
)

#: RFC 3339 date-time with a zone: what ``expires_at`` takes (no bare dates, no Unix times).
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
_RFC3339 = re.compile(RFC3339_PATTERN)
#: The longest pause a duration may ask for; beyond that, pause until lifted.
MAX_PAUSE_S = 366 * 86400.0


def parse_rfc3339(value: object) -> datetime:
    """Parse an RFC 3339 date-time with a zone.

    Raises:
        ValueError: anything else (a number, a bare date, no zone, an impossible date).
    """
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a zone, e.g. 2026-01-01T00:00:00Z")
    text = value.upper().replace(" ", "T")
    # fromisoformat takes at most microseconds: drop the extra digits of nanoseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("is not a valid date-time") from None


class PauseIn(Input):
    """Stop automatic activation: why, and until when (``expires_at`` or ``duration_s``).

    With neither, the pause lasts until an admin lifts it. Manual activation still works.
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "storage migration", "duration_s": 3600}]}
    )

    reason: Text
    expires_at: datetime | None = Field(None, description="RFC 3339 with a zone, in the future")
    duration_s: float | None = Field(
        None, gt=0, le=MAX_PAUSE_S, allow_inf_nan=False, description="pause for this many seconds from now"
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        return None if value is None else parse_rfc3339(value)

    @field_validator("duration_s")
    @classmethod
    def _one_expiry(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("expires_at") is not None:
            raise ValueError("give expires_at or duration_s, not both")
        return value
