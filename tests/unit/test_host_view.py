"""The host view says what holds a host and when it was last clean (no stale contradiction)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from autorecovery.services.host_view import held_by, last_clean_at
from models.assessment import assess
from models.domain import Cluster, Host, HostStatus
from models.safety import Gates, Pause
from tests.fakes.ports import good_report

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CLUSTER = Cluster(
    id="c-1",
    required_networks=frozenset({"mgmt"}),
    storage_domains=frozenset({"sd-1"}),
    min_version="4.5",
    cpu_flags=frozenset({"vmx"}),
)
OUT = Host("h-1", "c-1", "http://a", HostStatus.NON_RESPONSIVE, "agent_unreachable", "TimeoutError",
           status_changed_at=T0 - timedelta(hours=1))


def test_a_quarantined_host_with_a_clean_report_says_so() -> None:
    quarantined = replace(OUT, quarantined_at=T0)
    report = good_report("h-1", T0 - timedelta(seconds=2))
    assessment = assess(report, CLUSTER, T0, 30.0)
    assert assessment.is_healthy
    assert last_clean_at(assessment, report, {}) == report.reported_at.isoformat()
    holds = held_by(quarantined, {"quarantine_reason": "5 ends in 1h"}, Gates(), T0)
    assert holds == [
        {"hold": "quarantine", "detail": "5 ends in 1h", "since": T0.isoformat(), "until": None}
    ]
    assert held_by(OUT, {}, Gates(), T0) == []


def test_an_unclean_host_shows_when_it_stopped_being_clean() -> None:
    report = good_report("h-1", T0, kvm=False)
    assessment = assess(report, CLUSTER, T0, 30.0)
    stopped = T0 - timedelta(minutes=5)
    assert last_clean_at(assessment, report, {"last_clean_at": stopped}) == stopped.isoformat()
    assert last_clean_at(assessment, None, {}) is None


def test_only_holds_in_force_are_listed() -> None:
    host = replace(
        OUT,
        autorecovery=False,
        failures=2,
        next_attempt_at=T0 + timedelta(minutes=1),
        status=HostStatus.ERROR,
        error_until=T0 + timedelta(minutes=30),
    )
    pause = Pause("c-1", "storage work", "alice", T0 - timedelta(minutes=1), T0 + timedelta(hours=1))
    gates = Gates(pauses={"c-1": pause}, observer_block="quiet_period: waiting")
    kinds = [h["hold"] for h in held_by(host, {}, gates, T0)]
    assert kinds == ["autorecovery_off", "error_period", "backoff", "pause", "observer"]
    later = T0 + timedelta(hours=2)
    assert [h["hold"] for h in held_by(host, {}, Gates(pauses={"c-1": pause}), later)] == [
        "autorecovery_off"
    ]


def test_an_agent_url_stored_with_credentials_is_shown_without_them() -> None:
    from autorecovery.services.views import host_summary

    old = replace(OUT, agent_url="http://admin:s3cret@10.0.0.5:8900/h-1")
    state = {"report_heard_at": None, "last_decision": None}
    shown = host_summary(old, None, state, T0)  # type: ignore[arg-type]
    assert shown["agent_url"] == "http://***@10.0.0.5:8900/h-1"
