"""A report saying the agent cannot save its state (``state_unwritable``) holds automatic activation."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.fakes.ports import good_report
from tests.unit.services.test_fleet import REPORT_BODY
from tests.unit.services.world import T0, World

FULL = "cannot save the agent's state: No space left on device"


def test_a_pulled_report_that_cannot_save_its_state_is_not_activated_and_says_why(world: World) -> None:
    world.register("h1")
    world.agents.reports["h1"] = replace(good_report("h1", T0), state_unwritable=FULL)
    result = world.monitoring.tick()
    assert world.enqueue.calls == [] and world.activations("h1") == []
    assert result.decisions == {"agent_state_unwritable": 1}
    shown = world.views.describe("h1")
    assert shown["last_decision"]["code"] == "agent_state_unwritable"
    assert (
        FULL in shown["last_decision"]["detail"]
        and "none is sent automatically" in shown["last_decision"]["detail"]
    )
    assert shown["report"]["state_unwritable"] == FULL
    assert [h["hold"] for h in shown["held_by"]] == ["agent_state_unwritable"]
    # Once the agent can save again, the next tick activates it.
    world.clock.advance(10)
    world.agents.reports["h1"] = good_report("h1", T0 + timedelta(seconds=10))
    world.monitoring.tick()
    assert world.enqueue.hosts() == ["h1"]


def test_a_pushed_report_that_cannot_save_its_state_is_kept_and_holds_the_host(world: World) -> None:
    world.register("h1")
    body = {**REPORT_BODY, "reported_at": (T0 - timedelta(seconds=1)).isoformat(), "protocol": 2}
    body["state_unwritable"] = FULL
    report, stored = world.fleet.receive_report("h1", body, "agent")
    assert stored and report.state_unwritable == FULL
    stored_report = world.stored_report("h1")
    assert stored_report is not None and stored_report.state_unwritable == FULL
    world.monitoring.tick()
    assert world.enqueue.calls == []
    assert world.row("h1")["last_decision"] == "agent_state_unwritable"


def test_the_api_shows_the_hold_and_the_agents_words() -> None:
    from datetime import UTC, datetime

    from tests.unit.test_api_errors import ADMIN, World
    from tests.unit.test_api_hardening import report_body

    api = World()
    body = report_body("h-1", reported_at=datetime.now(UTC).isoformat(), protocol=2, state_unwritable=FULL)
    assert api.call("POST", "/api/v1/hosts/h-1/report", json=body, headers=ADMIN).status_code == 200
    shown = api.call("GET", "/api/v1/hosts/h-1", headers=ADMIN)
    assert shown.status_code == 200, shown.text
    held = {h["hold"]: h["detail"] for h in shown.json()["held_by"]}
    assert FULL in held["agent_state_unwritable"] and shown.json()["report"]["state_unwritable"] == FULL
    assert shown.json()["why_not_recovered"]["code"] == "agent_state_unwritable", shown.json()[
        "why_not_recovered"
    ]
    # Every hold shows wherever holds show: the host list and /safety (the gauge: integration).
    listed = api.call("GET", "/api/v1/hosts", headers=ADMIN).json()["hosts"]
    assert [h["holds"] for h in listed if h["id"] == "h-1"] == [["agent_state_unwritable"]]
    safety = api.call("GET", "/api/v1/safety", headers=ADMIN).json()
    assert [h["hold"] for h in safety["holds"]] == ["agent_state_unwritable"]
