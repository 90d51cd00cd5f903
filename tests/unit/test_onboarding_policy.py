"""Registration in the pure core: unassigned until the first report; adopt marks a clean host up."""

from __future__ import annotations

from dataclasses import replace

import pytest

from models.assessment import Assessment
from models.domain import HostStatus, Trigger
from models.policy import ACTIVATE, ADOPTED, decide, evaluate, first_report, transition
from tests.unit.test_policy import (
    BAD,
    CLUSTER,
    GOOD,
    HEALTHY,
    KVM,
    MAX_AGE_S,
    NO_REPORT,
    NOW,
    STALE,
    UNREACHABLE,
    host,
)

S = HostStatus


@pytest.mark.parametrize(
    ("adopt", "assessment", "to", "reason"),
    [
        (False, NO_REPORT, None, None),
        (True, NO_REPORT, None, None),
        (True, HEALTHY, S.UP, ADOPTED),
        (False, HEALTHY, None, None),  # stays unassigned: decide() activates it (an init)
        (True, KVM, S.NON_OPERATIONAL, "kvm_not_running"),
        (False, KVM, S.NON_OPERATIONAL, "kvm_not_running"),
        (True, UNREACHABLE, None, None),  # never heard from: still unassigned, not a fault
        (False, UNREACHABLE, None, None),
        (True, STALE, S.NON_RESPONSIVE, "stale_report"),
        (False, BAD, S.NON_RESPONSIVE, "bad_report"),
    ],
)
def test_first_report_of_an_unassigned_host(
    adopt: bool, assessment: Assessment, to: HostStatus | None, reason: str | None
) -> None:
    unassigned = host(S.UNASSIGNED, adopt=adopt)
    change = first_report(unassigned, assessment)
    assert change == transition(unassigned, assessment)
    got = (change.status, change.reason) if change else (None, None)
    assert got == (to, reason)
    if change:
        assert change.expected is S.UNASSIGNED


def test_an_unassigned_host_waits_for_its_first_report_without_activation() -> None:
    decision = decide(host(S.UNASSIGNED), NO_REPORT, Trigger.AUTO, now=NOW)
    assert (decision.code, decision.detail) == ("no_report", "no monitoring report yet")  # said once


def test_evaluate_adopts_a_clean_host_up_and_activates_one_not_adopted() -> None:
    report = replace(GOOD, reported_at=NOW)
    adopted = evaluate(host(S.UNASSIGNED, adopt=True), report, CLUSTER, NOW, MAX_AGE_S)
    assert adopted.host.status is S.UP and adopted.decision.code == "healthy"
    plain = evaluate(host(S.UNASSIGNED), report, CLUSTER, NOW, MAX_AGE_S)
    assert plain.transition is None and plain.decision.code == ACTIVATE
    sick = evaluate(host(S.UNASSIGNED, adopt=True), replace(report, kvm=False), CLUSTER, NOW, MAX_AGE_S)
    assert sick.host.status is S.NON_OPERATIONAL and sick.decision.code == "has_problems"


def test_adopt_only_applies_to_the_first_report() -> None:
    # Once out of unassigned, an adopted host comes back only through an activation.
    report = replace(GOOD, reported_at=NOW)
    later = evaluate(host(S.NON_OPERATIONAL, adopt=True), report, CLUSTER, NOW, MAX_AGE_S)
    assert later.transition is None and later.decision.code == ACTIVATE
