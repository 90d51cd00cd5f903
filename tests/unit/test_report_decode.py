"""Raw report bodies: the typed fast path refuses what the validator refuses, naming the same field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.errors import BadReport
from models.report import MAX_DEPTH, parse_report
from models.report_wire import decode_json, decode_report
from tests.unit.test_assessment import APPENDIX_A, BAD_VALUES, REQUIRED, with_

NOW = datetime(2026, 11, 24, 12, 0, 5, tzinfo=UTC)


def raw(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_a_good_body_decodes_as_the_validator_parses_it() -> None:
    body = with_(protocol=2, init={"activation_id": "a-1", "fence": 4, "started_at": "2026-11-24T11:59:00Z"})
    assert decode_report(raw(body), "h-001", now=NOW) == parse_report(body, "h-001", now=NOW)
    decoded = decode_report(raw(body), "h-001", now=NOW)
    assert decoded.protocol == 2 and decoded.init is not None and decoded.init.fence == 4


@pytest.mark.parametrize(
    ("changes", "field"), [(row[1], row[2]) for row in BAD_VALUES], ids=[row[0] for row in BAD_VALUES]
)
def test_a_bad_value_names_the_same_field_both_ways(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(BadReport) as info:
        decode_report(raw(with_(**changes)), "h-001", now=NOW)
    assert info.value.field == field


@pytest.mark.parametrize("name", REQUIRED)
def test_a_missing_field_is_named(name: str) -> None:
    body = dict(APPENDIX_A)
    del body[name]
    with pytest.raises(BadReport) as info:
        decode_report(raw(body), "h-001", now=NOW)
    assert (info.value.field, info.value.message) == (name, "is required")


@pytest.mark.parametrize(
    "text",
    [
        b"[" * 200_000 + b"]" * 200_000,
        b'{"x": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
        b'{"x": "' + b"[" * 500 + b'", "y": ' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}",
    ],
    ids=["deep list", "deep object", "brackets in a string, then too deep"],
)
def test_nesting_past_the_limit_is_refused_without_recursion(text: bytes) -> None:
    with pytest.raises(BadReport, match="nested deeper than 32 levels"):
        decode_report(text, "h-001", now=NOW)
    with pytest.raises(BadReport, match="nested deeper"):
        decode_json(text)


def test_brackets_inside_strings_do_not_count() -> None:
    report = decode_report(raw(with_(version="4" + "[" * 100, extra="{" * 100)), "h-001", now=NOW)
    assert report.version.startswith("4[")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b"<html>502</html>", "body"),
        (raw(APPENDIX_A).replace(b"4.5.2", b"4.5\xff"), "body"),
        (raw(APPENDIX_A).replace(b'"vms_running": 3', b'"vms_running": 1' + b"0" * 5000), "body"),
        (b"", "body"),
        (b"\xef\xbb\xbf" + raw(APPENDIX_A), "body"),
    ],
    ids=["html", "invalid utf-8", "5000-digit integer", "empty", "byte order mark"],
)
def test_garbage_is_a_bad_report(text: bytes, field: str) -> None:
    with pytest.raises(BadReport) as info:
        decode_report(text, "h-001", now=NOW)
    assert info.value.field == field


@pytest.mark.parametrize(
    "ahead", [timedelta(seconds=31), timedelta(hours=1), datetime(9999, 12, 31, tzinfo=UTC) - NOW]
)
def test_a_date_ahead_past_the_skew_is_refused_both_ways(ahead: timedelta) -> None:
    body = with_(reported_at=(NOW + ahead).isoformat())
    for parse in (
        lambda: decode_report(raw(body), "h-001", now=NOW),
        lambda: parse_report(body, "h-001", now=NOW),
    ):
        with pytest.raises(BadReport) as info:
            parse()
        assert info.value.field == "reported_at" and "ahead of the collector's clock" in info.value.message


def test_a_date_within_the_skew_is_taken() -> None:
    body = with_(reported_at=(NOW + timedelta(seconds=29)).isoformat())
    assert decode_report(raw(body), "h-001", now=NOW, max_skew_s=30).reported_at > NOW


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.sampled_from(["", "h-001", "2026-11-24T12:00:00Z", "2026-11-24T12:00:00", "a\x00b", "x" * 201]),
    st.lists(st.text(max_size=3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.booleans() | st.integers(0, 1), max_size=3),
)
FIELDS = [*REQUIRED, "protocol", "init"]


@given(
    st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=4), st.sets(st.sampled_from(FIELDS), max_size=2)
)
@settings(max_examples=400, deadline=None)
def test_the_fast_path_agrees_with_the_validator(changes: dict[str, Any], dropped: set[str]) -> None:
    body = {k: v for k, v in with_(**changes).items() if k not in dropped}
    try:
        expected: object = parse_report(body, "h-001", now=NOW)
    except BadReport as exc:
        expected = exc.field
    try:
        got: object = decode_report(raw(body), "h-001", now=NOW)
    except BadReport as exc:
        got = exc.field
    assert got == expected


def test_an_agents_details_follow_the_products_words_in_a_problems_detail() -> None:
    from models.assessment import assess
    from models.domain import Cluster

    body = {
        "host_id": "h1",
        "reported_at": "2026-11-24T12:00:00Z",
        "kvm": True,
        "version": "4.5",
        "cpu_flags": ["vmx"],
        "networks": {"mgmt": True},
        "storage_domains": {"sd-1": False},
        "vms_running": 0,
        "mem_free_mb": 1,
        "details": {"storage_domain:sd-1": "pool pool-sd1: target /srv/sd1 is gone\u202e\n"},
    }
    raw = json.dumps(body).encode()
    report = decode_report(raw, "h1", now=datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    assert report == parse_report(body, "h1", now=datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    cluster = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
    [problem] = assess(report, cluster, datetime(2026, 11, 24, 12, 0, 1, tzinfo=UTC), 30).problems
    # Our words first, then the agent's, with the bidi override and the line break escaped.
    assert (
        problem.detail == "storage domain sd-1 unreachable: pool pool-sd1: target /srv/sd1 is gone\\u202e\\n"
    )


@pytest.mark.parametrize(
    ("details", "field"),
    [([1], "details"), ({"kvm": 3}, "details.kvm"), ({"kvm": "x" * 501}, "details.kvm")],
)
def test_bad_details_are_a_bad_report_naming_the_field(details: object, field: str) -> None:
    body = {
        "host_id": "h1",
        "reported_at": "2026-11-24T12:00:00Z",
        "kvm": False,
        "version": "4.5",
        "cpu_flags": [],
        "networks": {},
        "storage_domains": {},
        "vms_running": 0,
        "mem_free_mb": 1,
        "details": details,
    }
    for parse in (
        lambda: parse_report(body, "h1"),
        lambda: decode_report(json.dumps(body).encode(), "h1", now=datetime(2026, 11, 24, 12, tzinfo=UTC)),
    ):
        with pytest.raises(BadReport) as info:
            parse()
        assert info.value.field == field


@pytest.mark.parametrize(
    "repairable", [None, [], ["storage_domain:sd-1", "network:mgmt"], "x", [3], ["a\x00"]], ids=repr
)
def test_both_decoders_read_repairable_alike(repairable: object) -> None:
    body: dict[str, Any] = {
        "host_id": "h1",
        "reported_at": "2026-11-24T12:00:00Z",
        "kvm": True,
        "version": "4.5",
        "cpu_flags": [],
        "networks": {},
        "storage_domains": {},
        "vms_running": 0,
        "mem_free_mb": 1,
        "repairable": repairable,
    }
    now = datetime(2026, 11, 24, 12, tzinfo=UTC)
    answers: list[object] = []
    for parse in (
        lambda: parse_report(body, "h1", now=now),
        lambda: decode_report(json.dumps(body).encode(), "h1", now=now),
    ):
        try:
            answers.append(parse().repairable)
        except BadReport as exc:
            answers.append(exc.field)
    assert answers[0] == answers[1]


@pytest.mark.parametrize(
    "said",
    [None, "cannot save the agent's state: disk full", "x" * 600, "a\u202eb", 3, ["x"], "a\x00"],
    ids=repr,
)
def test_both_decoders_read_state_unwritable_alike(said: object) -> None:
    body = with_(protocol=2, state_unwritable=said)
    answers: list[object] = []
    for parse in (
        lambda: parse_report(body, "h-001", now=NOW),
        lambda: decode_report(raw(body), "h-001", now=NOW),
    ):
        try:
            answers.append(parse().state_unwritable)
        except BadReport as exc:
            answers.append(exc.field)
    assert answers[0] == answers[1]
    if isinstance(said, str) and "\x00" not in said:
        assert isinstance(answers[0], str) and len(answers[0]) <= 500 and "\u202e" not in answers[0]
    elif said is not None:
        assert answers[0] == "state_unwritable"  # refused, naming the field
    else:
        assert answers[0] is None
