"""Read the small JSON answers of v2 calls (init, status, fence), depth-checked like reports."""

from __future__ import annotations

from typing import Any

from models.errors import AgentUnavailable, BadReport
from models.report_wire import decode_json


def json_object(raw: bytes, url: str) -> dict[str, Any]:
    """The answer's JSON object, or AgentUnavailable saying what it is instead."""
    try:
        data = decode_json(raw)
    except BadReport as exc:
        raise AgentUnavailable(f"{url}: answer {exc}") from None
    if not isinstance(data, dict):
        raise AgentUnavailable(f"{url}: answer is not a JSON object")
    return data


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def error_code(data: dict[str, Any]) -> str | None:
    """The ``error`` a 409 names, when it names one."""
    value = data.get("error")
    return value if isinstance(value, str) else None


def busy_holder(data: dict[str, Any]) -> tuple[str | None, int | None]:
    """The activation id and fence a 409 busy names, when it names them."""
    act = data.get("activation_id")
    return (act if isinstance(act, str) else None), _int(data.get("fence"))


def highest(data: object) -> int | None:
    """The highest fence an answer says the agent accepted, when it says one."""
    return _int(data.get("highest")) if isinstance(data, dict) else None
