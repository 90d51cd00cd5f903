"""Validate an agent's report (agent protocol v1 and v2) into a ``Report``, naming the field on error.

Every report the product takes (pulled, pushed one at a time or in bulk) is decoded by
``models.report_wire.decode_report`` with ``ReportWire``, the one definition of its shape.
``parse_report`` runs only once ``ReportWire`` has refused a body, to name the field and say what
is wrong in words (msgspec's errors say ``$.networks[...]``, not which network); a property test
(tests/unit/test_report_decode.py) keeps the two refusing the same bodies, naming the same field.
The conformance checker and the shape tests also call it on decoded bodies.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from models.domain import AgentState, Report, RunningInit
from models.errors import BadReport

MAX_ID_LEN = 200
#: Counts are stored as PostgreSQL ``integer``.
MAX_COUNT = 2**31 - 1
#: Fences are PostgreSQL ``bigint``.
MAX_FENCE = 2**63 - 1
#: The deepest nesting a report may have; the protocol's own fields need 3 levels.
MAX_DEPTH = 32
#: How far ahead of the collector's clock a report may be dated (AUTORECOVERY_MAX_CLOCK_SKEW_S).
DEFAULT_MAX_SKEW_S = 30.0


#: The most entries a report's ``details`` may have, and the longest text of one.
MAX_DETAILS = 256
MAX_DETAIL_LEN = 500


def printable(text: str) -> str:
    """Quote a name for an error message without NULs or lone surrogates (unstorable text)."""
    return text.encode("unicode_escape").decode("ascii")


def check_text(name: str, value: str) -> None:
    if "\x00" in value:
        raise BadReport(name, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadReport(name, "must be valid Unicode") from exc


def _require(data: Mapping[str, Any], name: str, label: str | None = None) -> Any:
    if name not in data:
        raise BadReport(label or name, "is required")
    return data[name]


def _bool(data: Mapping[str, Any], name: str) -> bool:
    value = _require(data, name)
    if not isinstance(value, bool):
        raise BadReport(name, f"must be a boolean, not {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], name: str, top: int, label: str | None = None) -> int:
    label = label or name
    value = _require(data, name, label)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadReport(label, f"must be an integer, not {type(value).__name__}")
    if value < 0:
        raise BadReport(label, "must not be negative")
    if value > top:
        raise BadReport(label, f"must be at most {top}")
    return value


def _count(data: Mapping[str, Any], name: str) -> int:
    return _int(data, name, MAX_COUNT)


def _text(data: Mapping[str, Any], name: str, label: str | None = None) -> str:
    label = label or name
    value = _require(data, name, label)
    if not isinstance(value, str) or not value:
        raise BadReport(label, "must be a non-empty string")
    if len(value) > MAX_ID_LEN:
        raise BadReport(label, f"must be at most {MAX_ID_LEN} characters")
    check_text(label, value)
    return value


def _flag_map(data: Mapping[str, Any], name: str) -> dict[str, bool]:
    value = _require(data, name)
    if not isinstance(value, Mapping):
        raise BadReport(name, "must be an object of name to boolean")
    result: dict[str, bool] = {}
    for key, state in value.items():
        label = f"{name}.{printable(str(key))}"
        if not isinstance(key, str) or not isinstance(state, bool):
            raise BadReport(label, "must be a boolean")
        check_text(label, key)
        result[key] = state
    return result


def _flags(data: Mapping[str, Any]) -> frozenset[str]:
    flags = _require(data, "cpu_flags")
    if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
        raise BadReport("cpu_flags", "must be a list of strings")
    for flag in flags:
        check_text("cpu_flags", flag)
    return frozenset(flags)


def _protocol(data: Mapping[str, Any]) -> int:
    value = data.get("protocol", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadReport("protocol", "must be a positive integer (1 or 2)")
    return value


def _running_init(data: Mapping[str, Any]) -> RunningInit | None:
    value = data.get("init")
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadReport("init", "must be null or an object")
    started = value.get("started_at")
    return RunningInit(
        activation_id=_text(value, "activation_id", "init.activation_id"),
        fence=_int(value, "fence", MAX_FENCE, "init.fence"),
        started_at=None if started is None else parse_time(started, "init.started_at"),
    )


def parse_agent_state(value: object) -> AgentState | None:
    """The report's ``agent`` field: null/absent, or ``{"state_id", "highest_fence"}``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BadReport("agent", "must be null or an object")
    return AgentState(
        state_id=_text(value, "state_id", "agent.state_id"),
        highest_fence=_int(value, "highest_fence", MAX_FENCE, "agent.highest_fence"),
    )


def parse_details(value: object) -> dict[str, str]:
    """The optional ``details`` field: what the agent says is wrong, per object, in plain text.

    Control, format and line-breaking characters are escaped: the text reaches the CLI and logs.
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadReport("details", "must be an object of name to text")
    if len(value) > MAX_DETAILS:
        raise BadReport("details", f"must have at most {MAX_DETAILS} entries")
    found: dict[str, str] = {}
    for key, text in value.items():
        label = f"details.{printable(str(key))}"
        if not isinstance(key, str) or not isinstance(text, str):
            raise BadReport(label, "must be a string")
        if len(key) > 2 * MAX_ID_LEN or len(text) > MAX_DETAIL_LEN:
            raise BadReport(label, f"must be at most {MAX_DETAIL_LEN} characters")
        check_text(label, key)
        check_text(label, text)
        found[key] = "".join(c if c.isprintable() else printable(c) for c in text)
    return found


def parse_repairable(value: object) -> frozenset[str]:
    """The optional ``repairable`` field: keys (as in ``details``) of objects init repairs."""
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        raise BadReport("repairable", "must be a list of strings")
    if len(value) > MAX_DETAILS:
        raise BadReport("repairable", f"must have at most {MAX_DETAILS} entries")
    for key in value:
        if len(key) > 2 * MAX_ID_LEN:
            raise BadReport("repairable", f"keys must be at most {2 * MAX_ID_LEN} characters")
        check_text("repairable", key)
    return frozenset(value)


def parse_state_unwritable(value: object) -> str | None:
    """The optional ``state_unwritable`` field: null, or why the agent cannot save its state.

    Kept to ``MAX_DETAIL_LEN`` characters, control and bidi characters escaped (it is shown).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadReport("state_unwritable", "must be null or a string")
    check_text("state_unwritable", value)
    text = "".join(c if c.isprintable() else printable(c) for c in value[:MAX_DETAIL_LEN])
    return text or "the agent cannot save its state"


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


def check_not_ahead(reported_at: datetime, now: datetime | None, max_skew_s: float) -> None:
    """Refuse a report dated more than ``max_skew_s`` ahead of ``now`` (it would never age)."""
    if now is None:
        return
    ahead_s = (reported_at - now).total_seconds()
    if ahead_s > max_skew_s:
        raise BadReport(
            "reported_at",
            f"is {ahead_s:.0f}s ahead of the collector's clock (limit {max_skew_s:g}s); "
            "check the host's clock",
        )


def _check_depth(data: object) -> None:
    """Refuse a decoded body nested deeper than MAX_DEPTH, walking it without recursion."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BadReport("body", f"is nested deeper than {MAX_DEPTH} levels")
        children: Any = value.values() if isinstance(value, Mapping) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, Mapping | list))


def parse_report(
    data: object,
    expected_host_id: str,
    source: str = "pull",
    *,
    now: datetime | None = None,
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> Report:
    """Validate a decoded report body against agent protocol v2 (v1 bodies are v2 without extras).

    Args:
        data: the decoded JSON body.
        expected_host_id: the id the host was registered with.
        source: ``pull`` (collected by the tick) or ``push`` (posted to the API).
        now: the collector's clock; a report dated more than ``max_skew_s`` after it is refused.
            None skips that check (shape tests only: every product path passes its clock).
        max_skew_s: the clock skew allowed to an agent.

    Raises:
        BadReport: naming the first field that is missing or mistyped, ``host_id`` when the
            report is about another host, ``body`` when it is nested too deeply.
    """
    if not isinstance(data, Mapping):
        raise BadReport("report", "must be a JSON object")
    _check_depth(data)
    host_id = _text(data, "host_id")
    check_host(host_id, expected_host_id)
    flags = _flags(data)
    reported_at = parse_time(_require(data, "reported_at"))
    check_not_ahead(reported_at, now, max_skew_s)
    return Report(
        host_id=host_id,
        reported_at=reported_at,
        agent_reachable=True,
        kvm=_bool(data, "kvm"),
        version=_text(data, "version"),
        cpu_flags=flags,
        networks=_flag_map(data, "networks"),
        storage_domains=_flag_map(data, "storage_domains"),
        vms_running=_count(data, "vms_running"),
        mem_free_mb=_count(data, "mem_free_mb"),
        source=source,
        protocol=_protocol(data),
        init=_running_init(data),
        details=parse_details(data.get("details")),
        agent=parse_agent_state(data.get("agent")),
        repairable=parse_repairable(data.get("repairable")),
        state_unwritable=parse_state_unwritable(data.get("state_unwritable")),
    )


def check_host(host_id: str, expected_host_id: str) -> None:
    if host_id != expected_host_id:
        raise BadReport("host_id", f"is {printable(host_id)!r}, expected {printable(expected_host_id)!r}")


BAD_REPORT_PREFIX = "bad report: "


def unreachable_report(host_id: str, at: datetime, error: str) -> Report:
    """Build the observation recorded when a host's agent could not be heard."""
    return Report(host_id=host_id, reported_at=at, agent_reachable=False, error=error)


def bad_report(host_id: str, at: datetime, exc: BadReport) -> Report:
    """Build the observation recorded when an agent's report was unusable; names the field."""
    return Report(host_id=host_id, reported_at=at, agent_reachable=False, error=BAD_REPORT_PREFIX + str(exc))


def is_bad_report(report: Report) -> bool:
    """True when the observation records an unusable report rather than silence."""
    return not report.agent_reachable and (report.error or "").startswith(BAD_REPORT_PREFIX)
