"""Parse an agent's report (agent protocol v1) into a ``Report``, naming the field on error."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from models.domain import Report, RunningInit
from models.errors import BadReport

_MAX_ID_LEN = 200
#: Counts are stored as PostgreSQL ``integer``.
MAX_COUNT = 2**31 - 1


def _printable(text: str) -> str:
    """Quote a name for an error message without NULs or lone surrogates (unstorable text)."""
    return text.encode("unicode_escape").decode("ascii")


def _check_text(name: str, value: str) -> None:
    if "\x00" in value:
        raise BadReport(name, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadReport(name, "must be valid Unicode") from exc


def _require(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise BadReport(name, "is required")
    return data[name]


def _bool(data: Mapping[str, Any], name: str) -> bool:
    value = _require(data, name)
    if not isinstance(value, bool):
        raise BadReport(name, f"must be a boolean, not {type(value).__name__}")
    return value


def _count(data: Mapping[str, Any], name: str) -> int:
    value = _require(data, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadReport(name, f"must be an integer, not {type(value).__name__}")
    if value < 0:
        raise BadReport(name, "must not be negative")
    if value > MAX_COUNT:
        raise BadReport(name, f"must be at most {MAX_COUNT}")
    return value


def _text(data: Mapping[str, Any], name: str) -> str:
    value = _require(data, name)
    if not isinstance(value, str) or not value:
        raise BadReport(name, "must be a non-empty string")
    if len(value) > _MAX_ID_LEN:
        raise BadReport(name, f"must be at most {_MAX_ID_LEN} characters")
    _check_text(name, value)
    return value


def _flag_map(data: Mapping[str, Any], name: str) -> dict[str, bool]:
    value = _require(data, name)
    if not isinstance(value, Mapping):
        raise BadReport(name, "must be an object of name to boolean")
    result: dict[str, bool] = {}
    for key, state in value.items():
        label = f"{name}.{_printable(str(key))}"
        if not isinstance(key, str) or not isinstance(state, bool):
            raise BadReport(label, "must be a boolean")
        _check_text(label, key)
        result[key] = state
    return result


def parse_time(value: object, name: str = "reported_at") -> datetime:
    """Parse an RFC 3339 time with a zone into an aware UTC datetime."""
    if not isinstance(value, str):
        raise BadReport(name, "must be an RFC 3339 time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadReport(name, f"is not an RFC 3339 time: {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        raise BadReport(name, "must carry a time zone (use Z for UTC)")
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # a time at the calendar's edge, moved out of it by UTC
        raise BadReport(name, "is out of range") from exc


def _running_init(data: Mapping[str, Any]) -> RunningInit | None:
    """The v2 ``init`` field: null, or the init running on the host."""
    value = data.get("init")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadReport("init", "must be null or an object")
    activation_id = value.get("activation_id")
    if not isinstance(activation_id, str) or not activation_id or len(activation_id) > _MAX_ID_LEN:
        raise BadReport("init.activation_id", f"must be a non-empty string of at most {_MAX_ID_LEN}")
    _check_text("init.activation_id", activation_id)
    fence = value.get("fence")
    if isinstance(fence, bool) or not isinstance(fence, int) or not 0 <= fence < 2**63:
        raise BadReport("init.fence", "must be a non-negative integer")
    started = value.get("started_at")
    return RunningInit(
        activation_id=activation_id,
        fence=fence,
        started_at=None if started is None else parse_time(started, "init.started_at"),
    )


def parse_report(data: object, expected_host_id: str, source: str = "pull") -> Report:
    """Validate a report body against agent protocol v1 (and v2's ``init``).

    Args:
        data: the decoded JSON body.
        expected_host_id: the id the host was registered with.
        source: ``pull`` (collected by the tick) or ``push`` (posted to the API).

    Raises:
        BadReport: naming the first field that is missing or mistyped, or ``host_id`` when the
            report is about another host.
    """
    if not isinstance(data, Mapping):
        raise BadReport("report", "must be a JSON object")
    host_id = _text(data, "host_id")
    if host_id != expected_host_id:
        raise BadReport(
            "host_id", f"is {_printable(host_id)!r}, expected {_printable(expected_host_id)!r}"
        )
    flags = _require(data, "cpu_flags")
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise BadReport("cpu_flags", "must be a list of strings")
    for flag in flags:
        _check_text("cpu_flags", flag)
    return Report(
        host_id=host_id,
        reported_at=parse_time(_require(data, "reported_at")),
        agent_reachable=True,
        kvm=_bool(data, "kvm"),
        version=_text(data, "version"),
        cpu_flags=frozenset(flags),
        networks=_flag_map(data, "networks"),
        storage_domains=_flag_map(data, "storage_domains"),
        vms_running=_count(data, "vms_running"),
        mem_free_mb=_count(data, "mem_free_mb"),
        source=source,
        init=_running_init(data),
    )


BAD_REPORT_PREFIX = "bad report: "


def unreachable_report(host_id: str, at: datetime, error: str) -> Report:
    """Build the observation recorded when a host's agent could not be heard."""
    return Report(host_id=host_id, reported_at=at, agent_reachable=False, error=error)


def bad_report(host_id: str, at: datetime, exc: BadReport) -> Report:
    """Build the observation recorded when an agent's report was unusable; names the field."""
    return Report(
        host_id=host_id, reported_at=at, agent_reachable=False, error=BAD_REPORT_PREFIX + str(exc)
    )


def is_bad_report(report: Report) -> bool:
    """True when the observation records an unusable report rather than silence."""
    return not report.agent_reachable and (report.error or "").startswith(BAD_REPORT_PREFIX)
