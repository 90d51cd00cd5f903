"""What an evaluation depends on (``models.changes``): the report digest and the time it holds."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.assessment import assess
from models.changes import ASSESSED, NOT_ASSESSED, report_digest, valid_until
from models.domain import AgentState, Cluster, Host, HostStatus, Report, RunningInit
from models.policy import decide
from models.safety import Gates, Pause

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
BASE = Report(
    host_id="h1",
    reported_at=NOW,
    kvm=True,
    version="4.5.2",
    cpu_flags=frozenset({"vmx"}),
    networks={"mgmt": True},
    storage_domains={"sd-1": True},
)
CHANGED: dict[str, Any] = {
    "host_id": "h2",
    "agent_reachable": False,
    "kvm": False,
    "version": "4.5.3",
    "cpu_flags": frozenset({"vmx", "svm"}),
    "networks": {"mgmt": False},
    "storage_domains": {"sd-1": False},
    "error": "ConnectTimeout",
    "protocol": 2,
    "init": RunningInit("act-1", 3, NOW),
    "details": {"kvm": "module not loaded"},
    "agent": AgentState("state-2", 7),
    "repairable": frozenset({"storage_domain:sd-1"}),
    "state_unwritable": "cannot save the agent's state: No space left on device",
}


def test_every_report_field_is_assessed_or_named_as_not() -> None:
    names = {f.name for f in fields(Report)}
    assert set(ASSESSED) | NOT_ASSESSED == names
    # A new assessed field needs a changed value here, so that the test below covers it.
    assert set(ASSESSED) == set(CHANGED)


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_what_the_policy_reads_changes_the_digest(name: str) -> None:
    assert report_digest(replace(BASE, **{name: CHANGED[name]})) != report_digest(BASE)


@pytest.mark.parametrize(
    "changes",
    [
        {"reported_at": NOW + timedelta(seconds=10)},
        {"vms_running": 7, "mem_free_mb": 123},
        {"source": "push"},
        {"networks": dict(reversed([("a", True), ("b", False)]))},
    ],
)
def test_time_counts_source_and_order_do_not(changes: dict[str, Any]) -> None:
    base = replace(BASE, networks={"a": True, "b": False}) if "networks" in changes else BASE
    assert report_digest(replace(base, **changes)) == report_digest(base)


def test_an_evaluation_holds_until_the_first_hold_or_pause_ends() -> None:
    host = Host("h1", "c1", "http://h1", status=HostStatus.UP, next_attempt_at=NOW + timedelta(seconds=40))
    pause = Pause("c1", "upgrade", "admin", NOW, NOW + timedelta(seconds=20))
    assessment = assess(BASE, Cluster("c1"), NOW, 30)
    decision = decide(host, assessment, now=NOW)
    assert valid_until(host, Gates(pauses={"c1": pause}), NOW, assessment, decision) == NOW + timedelta(
        seconds=20
    )
    assert valid_until(host, Gates(), NOW, assessment, decision) == NOW + timedelta(seconds=40)


def test_a_stale_report_or_an_activation_is_evaluated_every_tick() -> None:
    host = Host("h1", "c1", "http://h1", status=HostStatus.NON_OPERATIONAL)
    stale = assess(BASE, Cluster("c1"), NOW + timedelta(seconds=60), 30)
    assert valid_until(host, Gates(), NOW, stale, decide(host, stale, now=NOW)) is None
    fresh = assess(BASE, Cluster("c1"), NOW, 30)
    activate = decide(host, fresh, now=NOW)
    assert activate.is_activate and valid_until(host, Gates(), NOW, fresh, activate) is None


def test_the_fast_digest_hashes_each_field_as_its_canonical_form() -> None:
    from models.changes import _canonical, _hash

    report = replace(BASE, **{k: v for k, v in CHANGED.items() if k != "host_id"})
    for _ in range(2):  # the dataclasses' field names first looked up, then remembered
        assert report_digest(report) == _hash(repr([_canonical(getattr(report, n)) for n in ASSESSED]))


def test_remembered_digests_are_the_digests_of_the_reports() -> None:
    from models.changes import ReportDigests

    digests = ReportDigests(max_hosts=2)
    assert digests.digest(BASE) == report_digest(BASE)
    later = replace(BASE, reported_at=NOW + timedelta(seconds=10), vms_running=9, source="push")
    assert digests.digest(later) == report_digest(BASE)  # nothing assessed changed
    reordered = replace(BASE, networks={"vmnet": True, "mgmt": True})
    assert (
        digests.digest(reordered)
        == report_digest(reordered)
        == report_digest(replace(BASE, networks={"mgmt": True, "vmnet": True}))
    )
    for name, value in CHANGED.items():  # every assessed change is hashed again
        changed = replace(BASE, **{name: value})
        assert digests.digest(changed) == report_digest(changed) != report_digest(BASE), name
        assert digests.digest(BASE) == report_digest(BASE), name  # and back
    assert len(digests._last) <= 2
