"""The assessment (report + cluster + now -> problems) and the agent-protocol report parser."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import zip_longest
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.assessment import Assessment, Problem, assess, version_tuple
from models.domain import SILENT_REASONS, Cluster, Reason, Report
from models.errors import BadReport
from models.report import bad_report, is_bad_report, parse_report, parse_time, unreachable_report

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
MAX_AGE_S = 30.0
CLUSTER = Cluster(
    id="c1",
    required_networks=frozenset({"mgmt", "vmnet"}),
    storage_domains=frozenset({"sd-1", "sd-2"}),
    min_version="4.5",
    cpu_flags=frozenset({"vmx", "sse4_2"}),
)
GOOD = Report(
    host_id="h-001",
    reported_at=NOW - timedelta(seconds=5),
    kvm=True,
    version="4.5.2",
    cpu_flags=frozenset({"vmx", "sse4_2", "avx2"}),
    networks={"mgmt": True, "vmnet": True, "backup": False},
    storage_domains={"sd-1": True, "sd-2": True, "sd-9": False},
    vms_running=3,
    mem_free_mb=12000,
)

R = Reason


def reasons(a: Assessment) -> list[Reason]:
    return [p.reason for p in a.problems]


# --- assess: one table, one row per reason ------------------------------------------------------

ASSESS_TABLE: list[tuple[str, dict[str, Any], dict[str, Any], list[Problem]]] = [
    ("healthy", {}, {}, []),
    ("kvm not running", {"kvm": False}, {}, [Problem(R.KVM_NOT_RUNNING, "kvm is not running")]),
    (
        "storage domain not reported",
        {"storage_domains": {"sd-2": True}},
        {},
        [Problem(R.STORAGE_DOMAIN_UNREACHABLE, "storage domain sd-1 not reported", "sd-1")],
    ),
    (
        "storage domain unreachable",
        {"storage_domains": {"sd-1": True, "sd-2": False}},
        {},
        [Problem(R.STORAGE_DOMAIN_UNREACHABLE, "storage domain sd-2 unreachable", "sd-2")],
    ),
    (
        "both storage domains out, sorted",
        {"storage_domains": {"sd-2": False}},
        {},
        [
            Problem(R.STORAGE_DOMAIN_UNREACHABLE, "storage domain sd-1 not reported", "sd-1"),
            Problem(R.STORAGE_DOMAIN_UNREACHABLE, "storage domain sd-2 unreachable", "sd-2"),
        ],
    ),
    (
        "network not configured",
        {"networks": {"vmnet": True}},
        {},
        [Problem(R.NETWORK_UNREACHABLE, "network mgmt not configured", "mgmt")],
    ),
    (
        "network link down",
        {"networks": {"mgmt": True, "vmnet": False}},
        {},
        [Problem(R.NETWORK_INTERFACE_DOWN, "network vmnet link down", "vmnet")],
    ),
    (
        "version below",
        {"version": "4.4.9"},
        {},
        [Problem(R.VERSION_INCOMPATIBLE, "version 4.4.9 below cluster minimum 4.5")],
    ),
    ("version equal", {"version": "4.5"}, {}, []),
    ("version equal with trailing zero", {"version": "4.5.0"}, {}, []),
    ("version above", {"version": "4.6"}, {}, []),
    ("4.10 is above 4.9", {"version": "4.10"}, {"min_version": "4.9"}, []),
    (
        "4.9 is below 4.10",
        {"version": "4.9"},
        {"min_version": "4.10"},
        [Problem(R.VERSION_INCOMPATIBLE, "version 4.9 below cluster minimum 4.10")],
    ),
    ("4.10.1 is above 4.9.9", {"version": "4.10.1"}, {"min_version": "4.9.9"}, []),
    ("5 is above 4.99", {"version": "5"}, {"min_version": "4.99"}, []),
    (
        "cpu flag missing",
        {"cpu_flags": frozenset({"sse4_2"})},
        {},
        [Problem(R.CPU_INCOMPATIBLE, "missing cpu flags: vmx")],
    ),
    (
        "cpu flags missing, sorted",
        {"cpu_flags": frozenset()},
        {},
        [Problem(R.CPU_INCOMPATIBLE, "missing cpu flags: sse4_2, vmx")],
    ),
    (
        "cluster with no requirements",
        {"networks": {}, "storage_domains": {}, "cpu_flags": frozenset()},
        {
            "required_networks": frozenset(),
            "storage_domains": frozenset(),
            "cpu_flags": frozenset(),
            "min_version": "0",
        },
        [],
    ),
    (
        "every problem, in order",
        {
            "kvm": False,
            "storage_domains": {},
            "networks": {"vmnet": False},
            "version": "4.0",
            "cpu_flags": frozenset({"vmx"}),
        },
        {},
        [
            Problem(R.KVM_NOT_RUNNING, "kvm is not running"),
            Problem(R.STORAGE_DOMAIN_UNREACHABLE, "storage domain sd-1 not reported", "sd-1"),
            Problem(R.STORAGE_DOMAIN_UNREACHABLE, "storage domain sd-2 not reported", "sd-2"),
            Problem(R.NETWORK_UNREACHABLE, "network mgmt not configured", "mgmt"),
            Problem(R.NETWORK_INTERFACE_DOWN, "network vmnet link down", "vmnet"),
            Problem(R.VERSION_INCOMPATIBLE, "version 4.0 below cluster minimum 4.5"),
            Problem(R.CPU_INCOMPATIBLE, "missing cpu flags: sse4_2"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("report_changes", "cluster_changes", "expected"),
    [row[1:] for row in ASSESS_TABLE],
    ids=[row[0] for row in ASSESS_TABLE],
)
def test_assess_table(
    report_changes: dict[str, Any], cluster_changes: dict[str, Any], expected: list[Problem]
) -> None:
    a = assess(replace(GOOD, **report_changes), replace(CLUSTER, **cluster_changes), NOW, MAX_AGE_S)
    assert list(a.problems) == expected
    assert a.is_healthy is (not expected)
    assert a.is_silent is False
    assert a.primary == (expected[0] if expected else None)
    assert a.report_age_s == pytest.approx(5.0)


SILENT_TABLE: list[tuple[str, Report | None, Reason, str]] = [
    ("no report", None, R.NO_REPORT, "no monitoring report yet"),
    (
        "stale report",
        replace(GOOD, reported_at=NOW - timedelta(seconds=31)),
        R.STALE_REPORT,
        "latest report is 31s old (limit 30s)",
    ),
    (
        "stale report with problems says only stale",
        replace(GOOD, reported_at=NOW - timedelta(hours=2), kvm=False),
        R.STALE_REPORT,
        "7200s old",
    ),
    (
        "report from the future",
        replace(GOOD, reported_at=NOW + timedelta(seconds=90)),
        R.STALE_REPORT,
        "dated 90s in the future; check the host's clock",
    ),
    (
        "agent unreachable",
        unreachable_report("h-001", NOW, "ConnectTimeout"),
        R.AGENT_UNREACHABLE,
        "ConnectTimeout",
    ),
    (
        "agent unreachable without an error",
        replace(GOOD, agent_reachable=False),
        R.AGENT_UNREACHABLE,
        "agent did not answer",
    ),
    (
        "old unreachable observation is still unreachable",
        unreachable_report("h-001", NOW - timedelta(hours=1), "HTTP 500"),
        R.AGENT_UNREACHABLE,
        "HTTP 500",
    ),
    (
        "bad report",
        bad_report("h-001", NOW, BadReport("kvm", "must be a boolean, not int")),
        R.BAD_REPORT,
        "kvm: must be a boolean",
    ),
]


@pytest.mark.parametrize(
    ("report", "reason", "detail_part"),
    [row[1:] for row in SILENT_TABLE],
    ids=[row[0] for row in SILENT_TABLE],
)
def test_assess_silent_table(report: Report | None, reason: Reason, detail_part: str) -> None:
    a = assess(report, CLUSTER, NOW, MAX_AGE_S)
    assert reasons(a) == [reason]
    assert detail_part in a.problems[0].detail
    assert a.is_silent is True
    assert a.is_healthy is False
    if report is None:
        assert a.report_age_s is None
    else:
        assert a.report_age_s == (NOW - report.reported_at).total_seconds()


@pytest.mark.parametrize(
    ("offset_s", "healthy"),
    [(-30.0, True), (-30.001, False), (0.0, True), (10.0, True), (30.0, True), (30.001, False)],
    ids=[
        "at the age limit",
        "just past it",
        "now",
        "slightly ahead",
        "ahead by the limit",
        "ahead past the limit",
    ],
)
def test_freshness_bounds(offset_s: float, healthy: bool) -> None:
    report = replace(GOOD, reported_at=NOW + timedelta(seconds=offset_s))
    a = assess(report, CLUSTER, NOW, MAX_AGE_S)
    assert a.is_healthy is healthy
    assert healthy or reasons(a) == [R.STALE_REPORT]


def test_bad_report_is_recognised_only_with_its_prefix() -> None:
    bad = bad_report("h1", NOW, BadReport("version", "must be a non-empty string"))
    assert is_bad_report(bad)
    assert bad.error == "bad report: version: must be a non-empty string"
    assert not is_bad_report(unreachable_report("h1", NOW, "ConnectTimeout"))
    assert not is_bad_report(GOOD)


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("4.5.2", (4, 5, 2)),
        ("4.10", (4, 10)),
        ("4.5.0", (4, 5)),
        ("0", ()),
        ("", ()),
        ("4.x", (4,)),
        ("v4.5", (4, 5)),
    ],
)
def test_version_tuple(version: str, expected: tuple[int, ...]) -> None:
    assert version_tuple(version) == expected


def test_version_with_a_build_suffix_is_not_above_the_next_patch_release() -> None:
    # A host at 4.5.2 (build 1) does not meet a 4.5.3 minimum.
    a = assess(replace(GOOD, version="4.5.2-1"), replace(CLUSTER, min_version="4.5.3"), NOW, MAX_AGE_S)
    assert reasons(a) == [R.VERSION_INCOMPATIBLE]


def test_release_candidate_is_not_above_a_later_minor() -> None:
    assert version_tuple("4.5rc1") < version_tuple("4.9")


# --- parse_report -------------------------------------------------------------------------------

APPENDIX_A: dict[str, Any] = {
    "host_id": "h-001",
    "reported_at": "2026-11-24T12:00:00Z",
    "kvm": True,
    "version": "4.5.2",
    "cpu_flags": ["vmx", "sse4_2"],
    "networks": {"mgmt": True, "vmnet": False},
    "storage_domains": {"sd-1": True, "sd-2": False},
    "vms_running": 3,
    "mem_free_mb": 12000,
}
REQUIRED = [
    "host_id",
    "reported_at",
    "kvm",
    "version",
    "cpu_flags",
    "networks",
    "storage_domains",
    "vms_running",
    "mem_free_mb",
]


def with_(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(APPENDIX_A)
    body.update(changes)
    return body


def test_appendix_a_example_parses() -> None:
    report = parse_report(copy.deepcopy(APPENDIX_A), "h-001")
    assert report == Report(
        host_id="h-001",
        reported_at=datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC),
        agent_reachable=True,
        kvm=True,
        version="4.5.2",
        cpu_flags=frozenset({"vmx", "sse4_2"}),
        networks={"mgmt": True, "vmnet": False},
        storage_domains={"sd-1": True, "sd-2": False},
        vms_running=3,
        mem_free_mb=12000,
        error=None,
        source="pull",
    )


def test_unknown_fields_are_ignored_and_source_is_kept() -> None:
    report = parse_report(with_(extra={"x": 1}, uptime_s=5), "h-001", source="push")
    assert report.source == "push"
    assert report.kvm is True


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T13:00:00+01:00", datetime(2026, 11, 24, 12, 0, tzinfo=UTC)),
        ("2026-11-24T12:00:00.250Z", datetime(2026, 11, 24, 12, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-24T12:00:00+00:00", datetime(2026, 11, 24, 12, 0, tzinfo=UTC)),
    ],
)
def test_times_are_converted_to_utc(value: str, expected: datetime) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("field", REQUIRED)
def test_each_missing_required_field_is_named(field: str) -> None:
    body = copy.deepcopy(APPENDIX_A)
    del body[field]
    with pytest.raises(BadReport) as info:
        parse_report(body, "h-001")
    assert info.value.field == field
    assert "is required" in str(info.value)


BAD_VALUES: list[tuple[str, dict[str, Any], str, str]] = [
    ("host_id number", {"host_id": 5}, "host_id", "non-empty string"),
    ("host_id empty", {"host_id": ""}, "host_id", "non-empty string"),
    ("host_id too long", {"host_id": "h" * 201}, "host_id", "at most 200"),
    ("host_id of another host", {"host_id": "h-002"}, "host_id", "expected 'h-001'"),
    ("reported_at number", {"reported_at": 1764000000}, "reported_at", "RFC 3339"),
    ("reported_at garbage", {"reported_at": "yesterday"}, "reported_at", "not an RFC 3339 time"),
    ("reported_at naive", {"reported_at": "2026-11-24T12:00:00"}, "reported_at", "time zone"),
    ("reported_at a date only", {"reported_at": "2026-11-24"}, "reported_at", "time zone"),
    ("kvm a string", {"kvm": "true"}, "kvm", "boolean"),
    ("kvm an int", {"kvm": 1}, "kvm", "boolean, not int"),
    ("kvm null", {"kvm": None}, "kvm", "boolean"),
    ("version a number", {"version": 4.5}, "version", "non-empty string"),
    ("version empty", {"version": ""}, "version", "non-empty string"),
    ("cpu_flags a string", {"cpu_flags": "vmx"}, "cpu_flags", "list of strings"),
    ("cpu_flags with a number", {"cpu_flags": ["vmx", 1]}, "cpu_flags", "list of strings"),
    ("networks a list", {"networks": ["mgmt"]}, "networks", "object"),
    ("networks with an int state", {"networks": {"mgmt": 1}}, "networks.mgmt", "boolean"),
    (
        "storage_domains a string state",
        {"storage_domains": {"sd-1": "up"}},
        "storage_domains.sd-1",
        "boolean",
    ),
    ("storage_domains null", {"storage_domains": None}, "storage_domains", "object"),
    ("vms_running bool as int", {"vms_running": True}, "vms_running", "integer, not bool"),
    ("mem_free_mb bool as int", {"mem_free_mb": False}, "mem_free_mb", "integer, not bool"),
    ("vms_running float", {"vms_running": 3.0}, "vms_running", "integer"),
    ("vms_running string", {"vms_running": "3"}, "vms_running", "integer"),
    ("vms_running negative", {"vms_running": -1}, "vms_running", "negative"),
    ("mem_free_mb negative", {"mem_free_mb": -12000}, "mem_free_mb", "negative"),
]


@pytest.mark.parametrize(
    ("changes", "field", "message"), [row[1:] for row in BAD_VALUES], ids=[row[0] for row in BAD_VALUES]
)
def test_bad_values_are_named(changes: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(BadReport) as info:
        parse_report(with_(**changes), "h-001")
    assert info.value.field == field
    assert message in info.value.message
    assert str(info.value).startswith(field + ": ")


@pytest.mark.parametrize("body", [None, [], "report", 3, [APPENDIX_A]], ids=repr)
def test_a_body_that_is_not_an_object_is_a_bad_report(body: object) -> None:
    with pytest.raises(BadReport) as info:
        parse_report(body, "h-001")
    assert info.value.field == "report"


def test_zero_counts_and_empty_collections_are_valid() -> None:
    report = parse_report(
        with_(vms_running=0, mem_free_mb=0, cpu_flags=[], networks={}, storage_domains={}), "h-001"
    )
    assert (report.vms_running, report.mem_free_mb, report.cpu_flags) == (0, 0, frozenset())


# --- properties ---------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c", "d"])
VERSIONS = st.lists(st.integers(0, 12), min_size=1, max_size=4).map(lambda xs: ".".join(map(str, xs)))


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    return Cluster(
        id="c",
        required_networks=draw(st.frozensets(NAMES, max_size=3)),
        storage_domains=draw(st.frozensets(NAMES, max_size=3)),
        min_version=draw(VERSIONS),
        cpu_flags=draw(st.frozensets(NAMES, max_size=3)),
    )


@st.composite
def reports(draw: st.DrawFn) -> Report | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    reachable = draw(st.integers(0, 5)) > 0
    error = None if reachable else draw(st.sampled_from([None, "ConnectTimeout", "bad report: kvm: x"]))
    return Report(
        host_id="h",
        reported_at=NOW + timedelta(seconds=draw(st.floats(-120, 120, allow_nan=False))),
        agent_reachable=reachable,
        kvm=draw(st.booleans()),
        version=draw(VERSIONS),
        cpu_flags=draw(st.frozensets(NAMES, max_size=4)),
        networks=draw(st.dictionaries(NAMES, st.booleans(), max_size=4)),
        storage_domains=draw(st.dictionaries(NAMES, st.booleans(), max_size=4)),
        error=error,
    )


def version_at_least(version: str, minimum: str) -> bool:
    """An independent reading of 'numeric dotted version >= minimum': pad with zeros, compare."""
    mine, theirs = zip(
        *zip_longest([int(x) for x in version.split(".")], [int(x) for x in minimum.split(".")], fillvalue=0),
        strict=True,
    )
    return mine >= theirs


def fit(report: Report | None, cluster: Cluster, max_age_s: float) -> bool:
    """Everything the spec says must hold for a host to be recoverable."""
    if report is None or not report.agent_reachable:
        return False
    age_s = (NOW - report.reported_at).total_seconds()
    return (
        abs(age_s) <= max_age_s
        and report.kvm
        and all(report.storage_domains.get(sd) is True for sd in cluster.storage_domains)
        and all(report.networks.get(net) is True for net in cluster.required_networks)
        and version_at_least(report.version, cluster.min_version)
        and cluster.cpu_flags <= report.cpu_flags
    )


@settings(max_examples=200, deadline=None)
@given(report=reports(), cluster=clusters(), max_age_s=st.floats(1, 100))
def test_no_problem_exactly_when_the_host_is_fit(
    report: Report | None, cluster: Cluster, max_age_s: float
) -> None:
    a = assess(report, cluster, NOW, max_age_s)
    assert a.is_healthy == fit(report, cluster, max_age_s)


@settings(max_examples=150, deadline=None)
@given(report=reports(), cluster=clusters())
def test_silence_is_the_only_problem_and_is_deterministic(report: Report | None, cluster: Cluster) -> None:
    a = assess(report, cluster, NOW, MAX_AGE_S)
    assert a == assess(report, cluster, NOW, MAX_AGE_S)
    if a.is_silent:
        assert len(a.problems) == 1
    assert all(p.reason not in SILENT_REASONS for p in a.problems[1:])
    assert a.is_silent == (bool(a.problems) and a.problems[0].reason in SILENT_REASONS)


@given(a=VERSIONS, b=VERSIONS)
def test_version_order_matches_padded_numeric_order(a: str, b: str) -> None:
    assert (version_tuple(a) >= version_tuple(b)) == version_at_least(a, b)


# --- repairable problems (SPEC §2 "Repair", Appendix B) -----------------------------------------

SD1_DOWN = {"storage_domains": {"sd-1": False, "sd-2": True}}
MGMT_DOWN = {"networks": {"mgmt": False, "vmnet": True}}
SD1 = "storage_domain:sd-1"

REPAIR_TABLE: list[tuple[str, dict[str, Any], bool, list[bool]]] = [
    # (name, report changes, is_repairable, each problem's repairable flag)
    ("pool stopped, marked", {**SD1_DOWN, "repairable": frozenset({SD1})}, True, [True]),
    ("pool stopped, not marked", SD1_DOWN, False, [False]),
    ("network stopped, marked", {**MGMT_DOWN, "repairable": frozenset({"network:mgmt"})}, True, [True]),
    (
        "both marked",
        {**SD1_DOWN, **MGMT_DOWN, "repairable": frozenset({SD1, "network:mgmt"})},
        True,
        [True, True],
    ),
    ("one of two marked", {**SD1_DOWN, **MGMT_DOWN, "repairable": frozenset({SD1})}, False, [True, False]),
    ("kvm marked: never repairable", {"kvm": False, "repairable": frozenset({"kvm"})}, False, [False]),
    (
        "repairable pool, but kvm down too",
        {**SD1_DOWN, "kvm": False, "repairable": frozenset({SD1, "kvm"})},
        False,
        [False, True],
    ),
    (
        "repairable pool, cpu flag missing",
        {**SD1_DOWN, "cpu_flags": frozenset(), "repairable": frozenset({SD1})},
        False,
        [True, False],
    ),
    (
        "domain not reported at all: nothing to repair",
        {"storage_domains": {"sd-2": True}, "repairable": frozenset({SD1})},
        False,
        [False],
    ),
    ("marked but reachable: no problem", {"repairable": frozenset({SD1})}, False, []),
]


@pytest.mark.parametrize(
    ("changes", "repairable", "flags"), [r[1:] for r in REPAIR_TABLE], ids=[r[0] for r in REPAIR_TABLE]
)
def test_repairable_table(changes: dict[str, Any], repairable: bool, flags: list[bool]) -> None:
    a = assess(replace(GOOD, **changes), CLUSTER, NOW, MAX_AGE_S)
    assert [p.repairable for p in a.problems] == flags
    assert a.is_repairable is repairable
    assert a.is_recoverable is (repairable or not flags)


@settings(max_examples=200, deadline=None)
@given(
    marked=st.frozensets(
        st.sampled_from(["kvm", SD1, "storage_domain:sd-2", "network:mgmt", "network:vmnet", "x"])
    ),
    sd1=st.sampled_from([True, False, None]),
    mgmt=st.sampled_from([True, False, None]),
    kvm=st.booleans(),
    reachable=st.booleans(),
    age_s=st.floats(-60, 60, allow_nan=False),
)
def test_repairable_only_when_init_repairs_every_problem(
    marked: frozenset[str], sd1: bool | None, mgmt: bool | None, kvm: bool, reachable: bool, age_s: float
) -> None:
    domains = {"sd-2": True} | ({} if sd1 is None else {"sd-1": sd1})
    networks = {"vmnet": True} | ({} if mgmt is None else {"mgmt": mgmt})
    report = replace(
        GOOD,
        reported_at=NOW - timedelta(seconds=age_s),
        agent_reachable=reachable,
        kvm=kvm,
        storage_domains=domains,
        networks=networks,
        repairable=marked,
    )
    a = assess(report, CLUSTER, NOW, MAX_AGE_S)
    unmarked = replace(a, problems=tuple(replace(p, repairable=False) for p in a.problems))
    # Marks never change what is wrong, only whether init repairs it.
    assert [(p.reason, p.detail) for p in a.problems] == [(p.reason, p.detail) for p in unmarked.problems]
    if a.is_repairable:
        assert a.problems and not a.is_silent and kvm
        assert sd1 is not False or SD1 in marked
        assert mgmt is not False or "network:mgmt" in marked
        assert sd1 is not None and mgmt is not None
    if kvm and sd1 is not None and mgmt is not None and not a.is_silent and (sd1, mgmt) != (True, True):
        expected = (sd1 or SD1 in marked) and (mgmt or "network:mgmt" in marked)
        assert a.is_repairable is expected


def test_repairable_parses_and_is_a_bad_report_when_mistyped() -> None:
    body = {
        "host_id": "h-001",
        "reported_at": "2026-11-24T12:00:00Z",
        "kvm": True,
        "version": "4.5.2",
        "cpu_flags": ["vmx"],
        "networks": {},
        "storage_domains": {"sd-1": False},
        "vms_running": 0,
        "mem_free_mb": 1,
    }
    assert parse_report(body, "h-001").repairable == frozenset()
    assert parse_report({**body, "repairable": [SD1]}, "h-001").repairable == frozenset({SD1})
    for bad in ("storage_domain:sd-1", [1], ["x\x00"], ["k"] * 257):
        with pytest.raises(BadReport) as info:
            parse_report({**body, "repairable": bad}, "h-001")
        assert info.value.field == "repairable"
