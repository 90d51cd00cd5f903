"""Safety: the plan, the safety state and incidents."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import timedelta

from autorecovery.services.monitoring import TickResult
from models.safety import FLEET
from tests.fakes.ports import good_report
from tests.unit.services.safety_world import (
    C1,
    C2,
    SAFETY,
    TICK,
    Make,
    S,
    capped,
    fail_init,
    fail_until_quarantined,
)


def test_the_plan_shows_every_hold_and_gate(make: Make) -> None:
    w = make(capped(number=1), safety=replace(SAFETY, flap_limit=2))
    w.register("q1", "b1", "a1", "a2", cluster=C1)
    w.register("p1", cluster=C2)
    w.out("q1")
    fail_until_quarantined(w, "q1", 2)
    del w.agents.init_results["q1"]
    w.out("b1")
    fence = w.host("b1").fence
    with w.db.transaction() as conn:
        w.repos.safety.record_failure(conn, "b1", fence, w.clock() + timedelta(seconds=600))
    w.out("a1")
    w.clock.advance(1)
    w.out("a2", "p1")
    with w.db.transaction() as conn:  # the plan reads the stored reports
        w.repos.hosts.upsert_reports(
            conn, [good_report(h, w.clock()) for h in ("q1", "b1", "a1", "a2", "p1")], w.clock()
        )
    w.safety.pause("c2", "rack work", "bob", None)
    plan = w.plan()
    assert {h: (p["action"], p["code"]) for h, p in plan.items()} == {
        "q1": ("skip", "quarantined"),
        "b1": ("skip", "backoff"),
        "a1": ("activate", "activate"),
        "a2": ("skip", "capped"),
        "p1": ("skip", "paused"),
    }
    assert plan["a2"]["detail"] == "cluster c1 cap reached: 1/1 in flight"
    assert plan["p1"]["detail"] == "paused cluster c2 by bob: rack work"
    # With the observer gate recorded by the last tick, every candidate waits for it.
    with w.db.transaction() as conn:
        w.repos.safety.record_observer(conn, now=w.clock(), gate="redis_unavailable: x", silent=0, observed=5)
    plan = w.plan()
    assert (plan["a1"]["code"], plan["a2"]["code"]) == ("observer_unhealthy", "observer_unhealthy")
    assert plan["q1"]["code"] == "quarantined"  # a host's own hold comes first


def test_safety_state_shows_gate_pauses_in_flight_and_incidents(make: Make) -> None:
    w = make(replace(TICK, incident_min_hosts=3, incident_window_s=300.0))
    hosts = ["h1", "h2", "h3", "h4"]
    w.register(*hosts)
    with w.db.transaction() as conn:
        for h in hosts:
            w.repos.hosts.set_status(conn, h, "up", None, "ok", w.clock())
    w.clock.advance(10)
    for h in ["h1", "h2", "h3"]:  # lose the shared storage domain
        w.agents.reports[h] = good_report(h, w.clock(), storage_domains={"sd-1": False})
    w.healthy("h4")
    w.monitoring.tick()
    assert w.host("h1").status is S.NON_OPERATIONAL
    [opened] = w.audit(event="incident_opened")
    assert (
        opened["object_id"],
        opened["reason"],
        opened["details"]["subject"],
        opened["details"]["hosts"],
    ) == (
        "c1",
        "storage_domain_unreachable",
        "sd-1",
        3,
    )
    w.safety.pause(FLEET, "look first", "alice", None)
    state = w.safety.state()
    assert state["gate"] is None
    assert [p["scope"] for p in state["pauses"]] == [FLEET]
    assert [(i["cluster"], i["subject"], i["hosts"]) for i in state["incidents"]] == [("c1", "sd-1", 3)]
    assert state["in_flight"] == {}
    # The storage domain comes back: the hosts are recovered and the incident closes.
    w.safety.resume(FLEET, "alice")
    w.later(10, *hosts)
    w.monitoring.tick()
    assert w.safety.state()["in_flight"] == {"c1": 3}
    w.run_sent()
    w.later(10, *hosts)
    w.monitoring.tick()
    assert w.safety.state()["incidents"] == []
    assert [e["object_id"] for e in w.audit(event="incident_closed")] == ["c1"]


def test_tick_result_reports_the_gate_and_the_capped(make: Make) -> None:
    w = make(capped(number=1))
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    result = w.monitoring.tick()
    assert isinstance(result, TickResult)
    as_dict = result.as_dict()
    assert (as_dict["capped"], as_dict["enqueued"], as_dict["gate"]) == (1, 1, None)


def test_an_incident_closes_when_its_hosts_are_out_for_another_reason(make: Make) -> None:
    w = make(replace(TICK, incident_min_hosts=3))
    hosts = ["h1", "h2", "h3"]
    w.register(*hosts)
    with w.db.transaction() as conn:
        for h in hosts:
            w.repos.hosts.set_status(conn, h, "up", None, "ok", w.clock())
    for h in hosts:
        w.agents.reports[h] = good_report(h, w.clock(), storage_domains={"sd-1": False})
    w.monitoring.tick()
    assert len(w.safety.state()["incidents"]) == 1
    # The domain is back, but every init fails for another reason: no host is out for sd-1 now.
    for h in hosts:
        fail_init(w, h)
    w.later(10, *hosts)
    w.monitoring.tick()
    assert [o.outcome for o in w.run_sent()] == ["failed"] * 3
    assert {w.host(h).reason for h in hosts} == {"kvm_not_running"}
    w.later(1, *hosts)  # within the backoff: nothing moves but the incident
    w.monitoring.tick()
    assert w.safety.state()["incidents"] == []


def test_a_fleet_pause_also_holds_storage_domain_reactivation(make: Make) -> None:
    queued: list[str] = []
    w = make(TICK)
    w.monitoring.closer = dataclasses.replace(
        w.monitoring.closer, queue_domains=lambda: queued.append("called") or []
    )
    w.safety.pause("fleet", "maintenance window", "alice", None)
    w.monitoring.tick()
    assert queued == []
    w.safety.resume("fleet", "alice")
    w.monitoring.tick()
    assert queued == ["called"]
