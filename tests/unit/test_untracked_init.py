"""An init the product does not track, seen in a v2 report, keeps the host out of automatic
activation: the report's ``init`` field, the policy's decision, and the tick that records it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from models.domain import Cluster, Host, HostStatus, Report, RunningInit
from models.errors import BadReport
from models.policy import ACTIVATE, Skip, evaluate
from models.report import parse_report
from tests.fakes.ports import good_report
from tests.unit.test_reaper import World, w  # noqa: F401 - the fixture

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
OUT = Host("h1", "c1", "http://h1", HostStatus.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
RUNNING = RunningInit("a-elsewhere", 7, NOW - timedelta(seconds=40))


def report(init: RunningInit | None) -> Report:
    return replace(good_report("h1", NOW - timedelta(seconds=1)), protocol=2, init=init)


# === parsing ======================================================================================


def body(**extra: Any) -> dict[str, Any]:
    return {
        "host_id": "h1",
        "reported_at": "2026-11-24T12:00:00Z",
        "kvm": True,
        "version": "4.5.2",
        "cpu_flags": ["vmx"],
        "networks": {"mgmt": True},
        "storage_domains": {"sd-1": True},
        "vms_running": 0,
        "mem_free_mb": 1024,
        **extra,
    }


def test_a_v2_report_carries_the_running_init() -> None:
    init = {"activation_id": "a-1", "fence": 7, "started_at": "2026-11-24T11:59:20Z"}
    parsed = parse_report(body(protocol=2, init=init), "h1")
    assert parsed.init == RunningInit("a-1", 7, NOW - timedelta(seconds=40))
    assert parse_report(body(protocol=2, init=None), "h1").init is None
    assert parse_report(body(), "h1").init is None  # v1: no such field


@pytest.mark.parametrize(
    ("init", "field"),
    [
        ("a-1", "init"),
        ({"fence": 7}, "init.activation_id"),
        ({"activation_id": "a-1", "fence": "7"}, "init.fence"),
        ({"activation_id": "a-1", "fence": True}, "init.fence"),
        ({"activation_id": "a-1", "fence": 7, "started_at": "yesterday"}, "init.started_at"),
    ],
)
def test_a_bad_init_field_is_a_bad_report_naming_it(init: object, field: str) -> None:
    with pytest.raises(BadReport) as caught:
        parse_report(body(protocol=2, init=init), "h1")
    assert caught.value.field == field


# === the policy ===================================================================================


def decide_on(h: Host, r: Report | None, tracked: str | None = None) -> tuple[str, str]:
    d = evaluate(h, r, CLUSTER, NOW, 30.0, tracked=tracked).decision
    return d.code, d.detail


def test_an_untracked_init_holds_a_host_that_would_be_activated() -> None:
    assert decide_on(OUT, report(None))[0] == ACTIVATE
    code, detail = decide_on(OUT, report(RUNNING))
    assert code == Skip.UNTRACKED_INIT.value
    assert detail == (
        "its agent reports an init the product does not track (activation a-elsewhere, fence 7 "
        "since 2026-11-24 11:59:20 UTC); no automatic activation until it ends"
    )


def test_the_hosts_own_activation_in_flight_is_tracked() -> None:
    busy = replace(OUT, in_flight=True)
    assert decide_on(busy, report(RUNNING), tracked="a-elsewhere")[0] == Skip.ACTIVATION_IN_FLIGHT.value
    assert decide_on(busy, report(RUNNING))[0] == Skip.ACTIVATION_IN_FLIGHT.value  # id unknown
    assert decide_on(busy, report(RUNNING), tracked="a-other")[0] == Skip.UNTRACKED_INIT.value


def test_other_reasons_come_first() -> None:
    assert decide_on(replace(OUT, autorecovery=False), report(RUNNING))[0] == Skip.AUTORECOVERY_OFF.value
    up = replace(OUT, status=HostStatus.UP, reason=None, detail=None)
    assert decide_on(up, report(RUNNING))[0] == Skip.HEALTHY.value


# === the tick =====================================================================================


def test_the_tick_leaves_a_host_with_an_untracked_init_alone_and_says_why(w: World) -> None:  # noqa: F811
    w.out("h1")
    w.agents.reports["h1"] = replace(good_report("h1", w.db_clock()), protocol=2, init=RUNNING)
    result = w.tick()
    assert w.enqueue.calls == [] and result.decisions.get(Skip.UNTRACKED_INIT.value) == 1
    row = w.host_row("h1")
    assert row["last_decision"] == Skip.UNTRACKED_INIT.value
    assert "a-elsewhere" in row["last_decision_detail"]
    with w.db.transaction() as conn:  # the stored report keeps the init (a pushed report too)
        loaded = w.repos.hosts.get_host(conn, "h1")
    assert loaded is not None and loaded[1] is not None and loaded[1].init == RUNNING
    # Once the agent reports no init, the host comes back.
    w.agents.reports["h1"] = replace(good_report("h1", w.db_clock()), protocol=2, init=None)
    w.later(10)
    w.agents.reports["h1"] = replace(good_report("h1", w.db_clock()), protocol=2, init=None)
    assert w.tick().enqueued == 1
