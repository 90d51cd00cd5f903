"""The recovery policy: transitions, decisions, the in-activation re-check, and evaluate."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.assessment import Assessment, Problem, assess
from models.domain import SILENT_REASONS, Cluster, Host, HostStatus, Reason, Report, Trigger
from models.policy import (
    ACTIVATE,
    RECOVERABLE_STATUSES,
    REPAIR,
    Decision,
    Skip,
    Transition,
    apply,
    decide,
    evaluate,
    recheck,
    transition,
)

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
MAX_AGE_S = 30.0
S = HostStatus
AUTO, MANUAL = Trigger.AUTO, Trigger.MANUAL

CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
GOOD = Report(
    host_id="h1",
    reported_at=NOW - timedelta(seconds=3),
    kvm=True,
    version="4.5.2",
    cpu_flags=frozenset({"vmx"}),
    networks={"mgmt": True},
    storage_domains={"sd-1": True},
)

HEALTHY = Assessment((), 3.0)
KVM = Assessment((Problem(Reason.KVM_NOT_RUNNING, "kvm is not running"),), 3.0)
TWO = Assessment(
    (
        Problem(Reason.STORAGE_DOMAIN_UNREACHABLE, "storage domain sd-1 unreachable"),
        Problem(Reason.NETWORK_INTERFACE_DOWN, "network mgmt link down"),
    ),
    3.0,
)
POOL_STOPPED = Problem(
    Reason.STORAGE_DOMAIN_UNREACHABLE, "storage domain sd-1 unreachable: pool p is inactive", "sd-1", True
)
NET_STOPPED = Problem(Reason.NETWORK_INTERFACE_DOWN, "network mgmt link down", "mgmt", True)
REPAIRABLE = Assessment((POOL_STOPPED, NET_STOPPED), 3.0)
PARTLY = Assessment((POOL_STOPPED, Problem(Reason.KVM_NOT_RUNNING, "kvm is not running")), 3.0)
UNREACHABLE = Assessment((Problem(Reason.AGENT_UNREACHABLE, "ConnectTimeout"),), 0.0)
STALE = Assessment((Problem(Reason.STALE_REPORT, "latest report is 90s old (limit 30s)"),), 90.0)
NO_REPORT = Assessment((Problem(Reason.NO_REPORT, "no monitoring report yet"),), None)
BAD = Assessment((Problem(Reason.BAD_REPORT, "bad report: kvm: must be a boolean"),), 0.0)


def host(status: HostStatus = S.NON_OPERATIONAL, **kw: Any) -> Host:
    base: dict[str, Any] = {"reason": "kvm_not_running", "detail": "kvm is not running"}
    base.update(kw)
    return Host("h1", "c1", "http://h1", status, **base)


# --- transition ---------------------------------------------------------------------------------

TRANSITIONS: list[tuple[str, Host, Assessment, Transition | None]] = [
    ("up and healthy stays", host(S.UP, reason=None, detail=None), HEALTHY, None),
    (
        "up with a problem goes non_operational",
        host(S.UP, reason=None, detail=None),
        KVM,
        Transition("h1", S.UP, S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running"),
    ),
    (
        "up with several problems takes the first",
        host(S.UP),
        TWO,
        Transition(
            "h1", S.UP, S.NON_OPERATIONAL, "storage_domain_unreachable", "storage domain sd-1 unreachable"
        ),
    ),
    (
        "up and unheard goes non_responsive",
        host(S.UP),
        UNREACHABLE,
        Transition("h1", S.UP, S.NON_RESPONSIVE, "agent_unreachable", "ConnectTimeout"),
    ),
    (
        "up with a stale report goes non_responsive",
        host(S.UP),
        STALE,
        Transition("h1", S.UP, S.NON_RESPONSIVE, "stale_report", "latest report is 90s old (limit 30s)"),
    ),
    (
        "up with a bad report goes non_responsive",
        host(S.UP),
        BAD,
        Transition("h1", S.UP, S.NON_RESPONSIVE, "bad_report", "bad report: kvm: must be a boolean"),
    ),
    ("non_operational, same problem: nothing", host(), KVM, None),
    (
        "non_operational follows its current reason",
        host(),
        TWO,
        Transition(
            "h1",
            S.NON_OPERATIONAL,
            S.NON_OPERATIONAL,
            "storage_domain_unreachable",
            "storage domain sd-1 unreachable",
        ),
    ),
    (
        "non_operational follows a new detail",
        host(detail="old detail"),
        KVM,
        Transition("h1", S.NON_OPERATIONAL, S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running"),
    ),
    (
        "non_operational and unheard goes non_responsive",
        host(),
        NO_REPORT,
        Transition("h1", S.NON_OPERATIONAL, S.NON_RESPONSIVE, "no_report", "no monitoring report yet"),
    ),
    (
        "non_responsive heard with a problem goes non_operational",
        host(S.NON_RESPONSIVE, reason="agent_unreachable", detail="x"),
        KVM,
        Transition("h1", S.NON_RESPONSIVE, S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running"),
    ),
    ("non_operational and healthy: no status change (the decision brings it back)", host(), HEALTHY, None),
    ("maintenance is not touched", host(S.MAINTENANCE), KVM, None),
    ("initializing is not touched", host(S.INITIALIZING), UNREACHABLE, None),
    ("error is not touched", host(S.ERROR), KVM, None),
]


@pytest.mark.parametrize(
    ("h", "a", "expected"), [r[1:] for r in TRANSITIONS], ids=[r[0] for r in TRANSITIONS]
)
def test_transition_table(h: Host, a: Assessment, expected: Transition | None) -> None:
    change = transition(h, a)
    assert change == expected
    after = apply(h, change)
    if expected is None:
        assert after is h
    else:
        assert (after.status, after.reason, after.detail) == (
            expected.status,
            expected.reason,
            expected.detail,
        )


# --- decide -------------------------------------------------------------------------------------

DECISIONS: list[tuple[str, Host, Assessment, Trigger, str]] = [
    ("up and healthy", host(S.UP), HEALTHY, AUTO, Skip.HEALTHY),
    ("up with a problem", host(S.UP), KVM, AUTO, Skip.HAS_PROBLEMS),
    ("up, manual: still not activated", host(S.UP), HEALTHY, MANUAL, Skip.HEALTHY),
    ("non_operational, fresh clean report", host(), HEALTHY, AUTO, ACTIVATE),
    ("non_responsive, fresh clean report", host(S.NON_RESPONSIVE), HEALTHY, AUTO, ACTIVATE),
    ("a problem", host(), KVM, AUTO, Skip.HAS_PROBLEMS),
    ("several problems", host(), TWO, AUTO, Skip.HAS_PROBLEMS),
    ("agent unreachable", host(S.NON_RESPONSIVE), UNREACHABLE, AUTO, Skip.AGENT_UNREACHABLE),
    ("stale report", host(S.NON_RESPONSIVE), STALE, AUTO, Skip.STALE_REPORT),
    ("no report", host(S.NON_RESPONSIVE), NO_REPORT, AUTO, Skip.NO_REPORT),
    ("bad report", host(S.NON_RESPONSIVE), BAD, AUTO, Skip.STALE_REPORT),
    ("maintenance", host(S.MAINTENANCE), HEALTHY, AUTO, Skip.MAINTENANCE),
    ("maintenance, manual", host(S.MAINTENANCE), KVM, MANUAL, ACTIVATE),
    ("initializing", host(S.INITIALIZING), HEALTHY, AUTO, Skip.ACTIVATION_IN_FLIGHT),
    ("initializing, manual", host(S.INITIALIZING), HEALTHY, MANUAL, Skip.ACTIVATION_IN_FLIGHT),
    ("activation in flight", host(in_flight=True), HEALTHY, AUTO, Skip.ACTIVATION_IN_FLIGHT),
    ("activation in flight, manual", host(in_flight=True), HEALTHY, MANUAL, Skip.ACTIVATION_IN_FLIGHT),
    ("autorecovery off", host(autorecovery=False), HEALTHY, AUTO, Skip.AUTORECOVERY_OFF),
    ("autorecovery off, manual", host(autorecovery=False), HEALTHY, MANUAL, ACTIVATE),
    ("autorecovery off, manual, with a problem", host(autorecovery=False), KVM, MANUAL, ACTIVATE),
    ("error waits out its period", host(S.ERROR), HEALTHY, AUTO, Skip.ERROR_PERIOD),
    ("error, manual", host(S.ERROR), HEALTHY, MANUAL, ACTIVATE),
    ("every problem repairable", host(), REPAIRABLE, AUTO, REPAIR),
    ("unassigned, every problem repairable", host(S.UNASSIGNED), REPAIRABLE, AUTO, REPAIR),
    ("one problem init cannot repair", host(), PARTLY, AUTO, Skip.HAS_PROBLEMS),
    ("up, repairable: taken out first", host(S.UP), REPAIRABLE, AUTO, Skip.HAS_PROBLEMS),
    ("repairable, autorecovery off", host(autorecovery=False), REPAIRABLE, AUTO, Skip.AUTORECOVERY_OFF),
    ("repairable, in flight", host(in_flight=True), REPAIRABLE, AUTO, Skip.ACTIVATION_IN_FLIGHT),
    ("repairable, manual", host(), REPAIRABLE, MANUAL, ACTIVATE),
]


@pytest.mark.parametrize(
    ("h", "a", "trigger", "code"), [r[1:] for r in DECISIONS], ids=[r[0] for r in DECISIONS]
)
def test_decide_table(h: Host, a: Assessment, trigger: Trigger, code: str) -> None:
    d = decide(h, a, trigger)
    assert d.host_id == "h1"
    assert d.code == code
    assert d.is_activate is (code in (ACTIVATE, REPAIR))
    assert d.is_repair is (code == REPAIR)
    assert d.detail


def test_skip_details_explain_the_problems() -> None:
    d = decide(host(), TWO)
    assert d.detail == (
        "storage_domain_unreachable: storage domain sd-1 unreachable; "
        "network_interface_down: network mgmt link down"
    )
    assert decide(host(autorecovery=False), HEALTHY).detail.startswith("autorecovery is off")
    assert decide(host(S.ERROR), HEALTHY).detail == (
        "in error for failed VM launches until an admin activates it"
    )


def test_a_lone_silent_problem_is_not_named_twice() -> None:
    silent = decide(host(), UNREACHABLE)
    # Not "agent_unreachable: ConnectTimeout": the code says it already.
    assert (silent.code, silent.detail) == ("agent_unreachable", "ConnectTimeout")
    kvm = decide(host(), KVM)  # has_problems does not say which: the detail names it
    assert kvm.code == "has_problems" and kvm.detail.startswith("kvm_not_running: ")


# --- recheck ------------------------------------------------------------------------------------

RECHECKS: list[tuple[str, Host, Assessment, Trigger, str]] = [
    ("up: already up", host(S.UP), HEALTHY, AUTO, Skip.ALREADY_UP),
    ("up: already up, manual", host(S.UP), HEALTHY, MANUAL, Skip.ALREADY_UP),
    ("up with a problem: still already up", host(S.UP), KVM, MANUAL, Skip.ALREADY_UP),
    ("its own activation is in flight", host(in_flight=True), HEALTHY, AUTO, ACTIVATE),
    (
        "initializing left by an earlier attempt",
        host(S.INITIALIZING, in_flight=True),
        HEALTHY,
        AUTO,
        ACTIVATE,
    ),
    ("fresh report with a problem", host(in_flight=True), KVM, AUTO, Skip.HAS_PROBLEMS),
    ("fresh report unreachable", host(in_flight=True), UNREACHABLE, AUTO, Skip.AGENT_UNREACHABLE),
    ("stale fresh report", host(in_flight=True), STALE, AUTO, Skip.STALE_REPORT),
    (
        "autorecovery turned off meanwhile",
        host(autorecovery=False, in_flight=True),
        HEALTHY,
        AUTO,
        Skip.AUTORECOVERY_OFF,
    ),
    ("autorecovery off, manual", host(autorecovery=False, in_flight=True), HEALTHY, MANUAL, ACTIVATE),
    ("maintenance set meanwhile", host(S.MAINTENANCE, in_flight=True), HEALTHY, AUTO, Skip.MAINTENANCE),
    ("maintenance, manual", host(S.MAINTENANCE, in_flight=True), HEALTHY, MANUAL, ACTIVATE),
    ("manual with a problem: the agent answers", host(in_flight=True), KVM, MANUAL, ACTIVATE),
]


@pytest.mark.parametrize(
    ("h", "a", "trigger", "code"), [r[1:] for r in RECHECKS], ids=[r[0] for r in RECHECKS]
)
def test_recheck_table(h: Host, a: Assessment, trigger: Trigger, code: str) -> None:
    assert recheck(h, a, trigger).code == code


# --- evaluate -----------------------------------------------------------------------------------

EVALUATIONS: list[tuple[str, Host, Report | None, HostStatus, Transition | None, str]] = [
    ("up and clean", host(S.UP, reason=None, detail=None), GOOD, S.UP, None, Skip.HEALTHY),
    (
        "up, kvm stops: out and not re-activated",
        host(S.UP, reason=None, detail=None),
        replace(GOOD, kvm=False),
        S.NON_OPERATIONAL,
        Transition("h1", S.UP, S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running"),
        Skip.HAS_PROBLEMS,
    ),
    ("non_operational, fault cleared: activate", host(), GOOD, S.NON_OPERATIONAL, None, ACTIVATE),
    (
        "registered, first clean report: activate",
        host(S.NON_RESPONSIVE, reason="no_report", detail="registered; waiting for the first report"),
        GOOD,
        S.NON_RESPONSIVE,
        None,
        ACTIVATE,
    ),
    (
        "registered, nothing heard",
        host(S.NON_RESPONSIVE, reason="no_report", detail="registered; waiting for the first report"),
        None,
        S.NON_RESPONSIVE,
        Transition("h1", S.NON_RESPONSIVE, S.NON_RESPONSIVE, "no_report", "no monitoring report yet"),
        Skip.NO_REPORT,
    ),
    (
        "clean but stale report: never activated",
        host(),
        replace(GOOD, reported_at=NOW - timedelta(minutes=5)),
        S.NON_RESPONSIVE,
        Transition(
            "h1", S.NON_OPERATIONAL, S.NON_RESPONSIVE, "stale_report", "latest report is 300s old (limit 30s)"
        ),
        Skip.STALE_REPORT,
    ),
    ("in maintenance and clean", host(S.MAINTENANCE), GOOD, S.MAINTENANCE, None, Skip.MAINTENANCE),
]


@pytest.mark.parametrize(
    ("h", "report", "status", "change", "code"), [r[1:] for r in EVALUATIONS], ids=[r[0] for r in EVALUATIONS]
)
def test_evaluate_table(
    h: Host, report: Report | None, status: HostStatus, change: Transition | None, code: str
) -> None:
    ev = evaluate(h, report, CLUSTER, NOW, MAX_AGE_S)
    assert ev.transition == change
    assert ev.host.status is status
    assert ev.decision.code == code
    assert ev.assessment == assess(report, CLUSTER, NOW, MAX_AGE_S)


# --- properties ---------------------------------------------------------------------------------

NAMES = st.sampled_from(["a", "b", "c"])
REASONS = st.sampled_from(list(Reason))


@st.composite
def hosts(draw: st.DrawFn) -> Host:
    return Host(
        id="h1",
        cluster_id="c",
        agent_url="http://h1",
        status=draw(st.sampled_from(list(HostStatus))),
        reason=draw(st.one_of(st.none(), REASONS.map(str))),
        detail=draw(st.one_of(st.none(), st.sampled_from(["x", "kvm is not running"]))),
        autorecovery=draw(st.booleans()),
        fence=draw(st.integers(0, 5)),
        in_flight=draw(st.booleans()),
    )


@st.composite
def clusters(draw: st.DrawFn) -> Cluster:
    return Cluster(
        "c",
        draw(st.frozensets(NAMES, max_size=2)),
        draw(st.frozensets(NAMES, max_size=2)),
        draw(st.sampled_from(["0", "4.5", "4.10"])),
        draw(st.frozensets(NAMES, max_size=2)),
    )


@st.composite
def reports(draw: st.DrawFn) -> Report | None:
    if draw(st.integers(0, 7)) == 0:
        return None
    return Report(
        host_id="h1",
        reported_at=NOW - timedelta(seconds=draw(st.floats(-60, 90, allow_nan=False))),
        agent_reachable=draw(st.integers(0, 6)) > 0,
        kvm=draw(st.integers(0, 4)) > 0,
        version=draw(st.sampled_from(["4.4", "4.5", "4.9", "4.10.1"])),
        cpu_flags=draw(st.frozensets(NAMES)),
        networks=draw(st.dictionaries(NAMES, st.integers(0, 4).map(bool))),
        storage_domains=draw(st.dictionaries(NAMES, st.integers(0, 4).map(bool))),
        error=draw(st.sampled_from([None, "ConnectTimeout", "bad report: kvm: must be a boolean"])),
        repairable=draw(
            st.frozensets(st.sampled_from(["kvm", "storage_domain:a", "storage_domain:b", "network:a"]))
        ),
    )


@st.composite
def assessments(draw: st.DrawFn) -> Assessment:
    """Either what ``assess`` makes of a random report, or any list of problems at all."""
    if draw(st.booleans()):
        return assess(draw(reports()), draw(clusters()), NOW, MAX_AGE_S)
    problems = draw(
        st.lists(
            st.builds(Problem, REASONS, st.sampled_from(["x", "y"]), st.none(), st.booleans()), max_size=3
        )
    )
    return Assessment(tuple(problems), draw(st.one_of(st.none(), st.floats(-100, 100))))


def is_stale(report: Report | None) -> bool:
    return report is None or abs((NOW - report.reported_at).total_seconds()) > MAX_AGE_S


@settings(max_examples=200, deadline=None)
@given(h=hosts(), a=assessments())
def test_never_automatic_with_a_problem_in_maintenance_off_or_in_flight(h: Host, a: Assessment) -> None:
    d = decide(h, a, AUTO)
    if d.is_activate:
        assert a.is_healthy or (d.is_repair and a.is_repairable)
        assert not a.is_silent
        assert d.is_repair is bool(a.problems)
        assert h.status in RECOVERABLE_STATUSES
        assert h.status is not S.MAINTENANCE
        assert h.autorecovery
        assert not h.in_flight


@settings(max_examples=200, deadline=None)
@given(h=hosts(), report=reports(), cluster=clusters())
def test_never_automatic_on_a_stale_or_silent_report(
    h: Host, report: Report | None, cluster: Cluster
) -> None:
    ev = evaluate(h, report, cluster, NOW, MAX_AGE_S)
    if is_stale(report) or (report is not None and not report.agent_reachable):
        assert not ev.decision.is_activate
        assert not recheck(h, ev.assessment, AUTO).is_activate
    if ev.decision.is_activate and not ev.decision.is_repair:
        assert ev.assessment.is_healthy
        assert ev.transition is None
    if ev.decision.is_activate:
        assert ev.assessment.is_recoverable
        assert h.status in RECOVERABLE_STATUSES | {S.UP} and h.autorecovery and not h.in_flight


@settings(max_examples=200, deadline=None)
@given(h=hosts(), a=assessments())
def test_manual_activation_ignores_the_flag_and_the_problems(h: Host, a: Assessment) -> None:
    on, off = replace(h, autorecovery=True), replace(h, autorecovery=False)
    assert decide(on, a, MANUAL) == decide(off, a, MANUAL)
    assert recheck(on, a, MANUAL) == recheck(off, a, MANUAL)
    blocked = h.status in (S.UP, S.INITIALIZING) or h.in_flight
    assert decide(h, a, MANUAL).is_activate is (not blocked)
    # Inside its own activation, only an up host is refused.
    assert recheck(h, a, MANUAL).is_activate is (h.status is not S.UP)
    if h.status is S.UP:
        assert recheck(h, a, MANUAL).code == Skip.ALREADY_UP


@settings(max_examples=150, deadline=None)
@given(h=hosts(), a=assessments(), trigger=st.sampled_from(list(Trigger)))
def test_recheck_never_activates_more_than_decide_on_an_idle_host(
    h: Host, a: Assessment, trigger: Trigger
) -> None:
    idle = replace(h, in_flight=False, status=S.NON_OPERATIONAL if h.status is S.INITIALIZING else h.status)
    if h.status is not S.UP:
        assert recheck(h, a, trigger) == decide(idle, a, trigger)
    if recheck(h, a, AUTO).is_activate:
        assert a.is_recoverable


@settings(max_examples=150, deadline=None)
@given(h=hosts(), report=reports(), cluster=clusters())
def test_evaluate_is_deterministic_and_settles(h: Host, report: Report | None, cluster: Cluster) -> None:
    first = evaluate(h, report, cluster, NOW, MAX_AGE_S)
    assert first == evaluate(h, report, cluster, NOW, MAX_AGE_S)
    # A second tick on the same data changes nothing more.
    again = evaluate(first.host, report, cluster, NOW, MAX_AGE_S)
    assert again.transition is None
    assert again.host == first.host
    assert again.decision == first.decision


@settings(max_examples=200, deadline=None)
@given(a=assessments(), status=st.sampled_from(sorted(RECOVERABLE_STATUSES)), h=hosts())
def test_one_predicate_takes_a_host_out_and_brings_it_back(
    a: Assessment, status: HostStatus, h: Host
) -> None:
    up = replace(h, status=S.UP)
    goes_out = transition(up, a) is not None
    down = replace(h, status=status, autorecovery=True, in_flight=False)
    recoverable = decide(down, a, AUTO).is_activate
    assert goes_out == bool(a.problems)
    assert recoverable == (not a.problems or a.is_repairable)
    # A host goes out, and comes back only by an init that repairs what took it out.
    assert goes_out != recoverable or a.is_repairable
    if goes_out:
        taken_out = replace(apply(up, transition(up, a)), autorecovery=True, in_flight=False)
        assert decide(taken_out, a, AUTO).is_activate is a.is_repairable
        assert decide(taken_out, a, AUTO).is_repair is a.is_repairable


@settings(max_examples=200, deadline=None)
@given(h=hosts(), a=assessments())
def test_transitions_go_only_to_out_of_service_statuses(h: Host, a: Assessment) -> None:
    change = transition(h, a)
    if change is not None:
        assert change.expected is h.status
        assert change.status in RECOVERABLE_STATUSES
        assert (change.status is S.NON_RESPONSIVE) == (a.problems[0].reason in SILENT_REASONS)
        assert a.primary is not None and change.reason == a.primary.reason.value


def test_decision_is_a_value() -> None:
    assert Decision("h1", ACTIVATE, "x").is_activate
    assert not Decision("h1", Skip.HEALTHY.value, "x").is_activate


# --- an agent that cannot save its state (report field state_unwritable) -------------------------

DISK_FULL = "cannot save the agent's state: No space left on device"


@pytest.mark.parametrize(
    ("report", "trigger", "code"),
    [
        (replace(GOOD, state_unwritable=DISK_FULL), AUTO, Skip.AGENT_STATE_UNWRITABLE.value),
        (
            replace(GOOD, state_unwritable=DISK_FULL, kvm=False),
            AUTO,
            Skip.HAS_PROBLEMS.value,
        ),  # the fault first
        (replace(GOOD, state_unwritable=DISK_FULL), MANUAL, ACTIVATE),  # the admin asks, the agent answers
        (GOOD, AUTO, ACTIVATE),
    ],
    ids=["held", "a fault is said first", "manual", "can save: activated"],
)
def test_an_agent_that_cannot_save_its_state_is_not_activated_automatically(
    report: Report, trigger: Trigger, code: str
) -> None:
    a = assess(report, CLUSTER, NOW, MAX_AGE_S)
    decision = decide(host(), a, trigger, now=NOW, cluster=CLUSTER)
    assert decision.code == code
    if code == Skip.AGENT_STATE_UNWRITABLE.value:
        assert DISK_FULL in decision.detail and not decision.is_activate
        # The activation's own re-check on its fresh report holds it too.
        assert recheck(host(), a, AUTO, now=NOW, cluster=CLUSTER).code == code
        assert evaluate(host(), report, CLUSTER, NOW, MAX_AGE_S).decision.code == code


def test_an_up_host_whose_agent_cannot_save_its_state_stays_up_and_says_so() -> None:
    ev = evaluate(
        host(S.UP, reason=None, detail=None),
        replace(GOOD, state_unwritable=DISK_FULL),
        CLUSTER,
        NOW,
        MAX_AGE_S,
    )
    assert (
        ev.transition is None and ev.decision.code == Skip.HEALTHY.value and DISK_FULL in ev.decision.detail
    )
