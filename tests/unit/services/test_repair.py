"""Repair (SPEC §2): a host out only for what its own init repairs is brought back by an init."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from autorecovery.adapters.agents import InitResult, Target
from tests.fakes.ports import good_report
from tests.unit.services.safety_world import SAFETY, Make, S, World

SD1 = "storage_domain:sd-1"


def pool_stopped(w: World, host_id: str) -> None:
    """The host's pool behind sd-1 is stopped, its target there: the agent marks it repairable."""
    w.agents.reports[host_id] = good_report(
        host_id,
        w.clock() - timedelta(seconds=1),
        storage_domains={"sd-1": False},
        repairable=frozenset({SD1}),
        details={SD1: "pool sd-1 is inactive"},
    )


def init_repairs(w: World) -> None:
    """An init that starts the pool: after it, the host's report is clean."""
    original = w.agents.init

    def init(target: Target, fence: int, activation_id: str) -> InitResult:
        result = original(target, fence, activation_id)
        if result.ok:
            w.healthy(target.host_id)
        return result

    w.agents.init = init  # type: ignore[method-assign]


def test_a_stopped_pool_is_repaired_by_the_next_tick_with_no_admin(make: Make) -> None:
    w = make()
    w.register("h1", "h2")
    w.healthy("h1", "h2")
    for h in ("h1", "h2"):
        w.set_status(h, S.UP)
    init_repairs(w)
    pool_stopped(w, "h1")

    result = w.monitoring.tick()
    # One tick: the host leaves service with the reason, and the repair is queued at once.
    h1 = w.host("h1")
    assert (h1.status, h1.reason) == (S.NON_OPERATIONAL, "storage_domain_unreachable")
    assert "pool sd-1 is inactive" in (h1.detail or "")
    assert result.enqueued == 1
    code, detail = w.decision("h1")
    assert code == "repair"
    assert detail is not None and detail.startswith(
        "init repairs what keeps it out: storage_domain_unreachable"
    )
    [queued] = w.audit(event="activation_queued", object_id="h1")
    assert (queued["actor"], queued["reason"]) == ("auto", "repair")

    [outcome] = w.run_sent()
    assert outcome.outcome == "up"
    assert w.host("h1").status is S.UP
    assert [c[0] for c in w.agents.init_calls] == ["h1"]
    # Nobody but the product acted.
    assert {e["actor"] for e in w.audit(object_id="h1") if e["event"] != "host_registered"} <= {"auto"}


def test_the_plan_and_why_not_recovered_say_repair(make: Make) -> None:
    w = make()
    w.register("h1")
    w.set_status("h1", S.NON_OPERATIONAL, "storage_domain_unreachable", "x")
    pool_stopped(w, "h1")
    with w.db.transaction() as conn:  # the plan reads the stored report
        w.repos.hosts.upsert_reports(conn, [w.agents.reports["h1"]], w.clock())
    planned = w.plan()["h1"]
    assert (planned["action"], planned["code"]) == ("activate", "repair")
    assert planned["problems"] == [
        {
            "reason": "storage_domain_unreachable",
            "detail": "storage domain sd-1 unreachable",
            "repairable": True,
        }
    ]
    why = w.views.describe("h1")["why_not_recovered"]
    assert why["code"] == "repair"
    # The same host with a stopped pool whose storage is gone (not repairable) is not activated.
    with w.db.transaction() as conn:
        w.repos.hosts.upsert_reports(
            conn, [replace(w.agents.reports["h1"], repairable=frozenset(), reported_at=w.clock())], w.clock()
        )
    assert (w.plan()["h1"]["action"], w.plan()["h1"]["code"]) == ("skip", "has_problems")


def test_an_init_that_does_not_repair_is_a_charged_failure_up_to_quarantine(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    w.set_status("h1", S.NON_OPERATIONAL, "storage_domain_unreachable", "x")
    # The agent says init repairs it, and its init then fails: charged, backed off, then quarantined.
    w.agents.init_results["h1"] = InitResult(
        ok=False, reason="storage_domain_unreachable", detail="storage domain sd-1: cannot start pool"
    )
    for attempt in range(1, 4):
        pool_stopped(w, "h1")
        w.monitoring.tick()
        [outcome] = w.run_sent()
        assert outcome.outcome == "failed"
        h1 = w.host("h1")
        assert h1.failures == attempt and h1.next_attempt_at is not None
        pool_stopped(w, "h1")
        w.monitoring.tick()  # before the backoff ends: no new init
        assert len(w.agents.init_calls) == attempt
        assert w.decision("h1")[0] in ("backoff", "quarantined")
        w.clock.now = h1.next_attempt_at
    assert len(w.audit(event="backoff", object_id="h1")) == 3
    assert w.host("h1").quarantined_at is not None
    pool_stopped(w, "h1")
    w.monitoring.tick()
    assert w.decision("h1")[0] == "quarantined"
    assert len(w.agents.init_calls) == 3


def test_an_init_that_answers_ok_but_leaves_the_pool_stopped_is_charged(make: Make) -> None:
    w = make()
    w.register("h1")
    w.set_status("h1", S.NON_OPERATIONAL, "storage_domain_unreachable", "x")
    pool_stopped(w, "h1")  # and init does not change it
    w.monitoring.tick()
    [outcome] = w.run_sent()
    assert outcome.outcome == "unhealthy_after_init"
    assert w.host("h1").failures == 1


def test_an_admin_needs_no_force_for_what_init_repairs(make: Make) -> None:
    w = make()
    w.register("h1")
    w.set_status("h1", S.NON_OPERATIONAL, "storage_domain_unreachable", "x")
    pool_stopped(w, "h1")
    with w.db.transaction() as conn:
        w.repos.hosts.upsert_reports(conn, [w.agents.reports["h1"]], w.clock())
    w.fleet.request_activation("h1", "bob")  # no Conflict: nothing to force


def test_an_inactive_domain_a_host_can_repair_is_reconnected_through_that_host(make: Make) -> None:
    w = make()
    w.register("h1", "h2")
    for h in ("h1", "h2"):
        w.set_status(h, S.NON_OPERATIONAL, "storage_domain_unreachable", "x")
    with w.db.transaction() as conn:
        w.repos.storage.set_status(conn, "sd-1", "inactive", "no up host reaches it", w.clock())
    pool_stopped(w, "h2")  # h2's pool is stopped, its storage there; h1 reaches nothing
    w.agents.reports["h1"] = good_report("h1", w.clock(), storage_domains={"sd-1": False})
    storage = w.container.storage
    assert storage.queue_reachable() == []  # nothing stored yet: the tick stores the reports
    with w.db.transaction() as conn:
        w.repos.hosts.upsert_reports(conn, list(w.agents.reports.values()), w.clock())
    [sd] = storage.queue_reachable()
    assert sd == "sd-1"
    with w.db.transaction() as conn:
        activation = w.repos.storage.in_flight(conn, "sd-1")
    assert activation is not None
    out = storage.run(activation["id"], "sd-1")
    assert out.outcome == "active"
    assert [c[0] for c in w.agents.connect_calls] == ["h2"]
