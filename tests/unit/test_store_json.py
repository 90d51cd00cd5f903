"""The JSON the store sends in ``jsonb`` parameters: datetimes as they are, in either encoder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from autorecovery.adapters.store.db import _dumps

AT = datetime(2026, 12, 8, 1, 2, 3, 456_789, tzinfo=timezone(timedelta(hours=-7)))


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_datetime_is_written_as_its_instant() -> None:
    encoded = _dumps({"t": AT, "u": AT.astimezone(UTC)})
    data = json.loads(encoded)
    assert _instant(data["t"]) == AT
    assert _instant(data["u"]) == AT


def test_the_fallback_for_a_lone_surrogate_writes_datetimes_too() -> None:
    """The fast encoder refuses a lone surrogate; the fallback must not fail on the datetimes
    beside it (PostgreSQL then refuses the surrogate, as a DataError, as before)."""
    encoded = _dumps({"t": AT, "name": "x\ud800"})
    assert isinstance(encoded, str)
    assert _instant(json.loads(encoded)["t"]) == AT


def test_anything_else_unencodable_still_fails() -> None:
    with pytest.raises(TypeError):
        _dumps({"name": "x\ud800", "other": object()})
