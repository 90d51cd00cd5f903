"""Safety: pauses, fleet-wide and per cluster."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.errors import InvalidInput, NotFound
from models.safety import FLEET
from tests.unit.services.safety_world import C1, C2, T0, Make


def test_a_fleet_pause_stops_the_tick_and_ends_by_itself(make: Make) -> None:
    w = make()
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    pause = w.safety.pause(FLEET, "storage upgrade", "alice", T0 + timedelta(seconds=60))
    [entry] = w.audit(event="paused")
    assert (entry["object_type"], entry["object_id"], entry["actor"], entry["reason"]) == (
        "pause",
        FLEET,
        "alice",
        "storage upgrade",
    )
    assert entry["details"]["expires_at"] == "2026-11-24T12:01:00+00:00"
    result = w.monitoring.tick()
    assert w.enqueue.calls == []
    assert result.decisions == {"paused": 2}
    assert w.decision("h1") == ("paused", pause.describe())
    assert w.plan()["h1"]["code"] == "paused"
    assert w.views.describe("h1")["holds"]["pause"]["owner"] == "alice"
    w.later(59, "h1", "h2")
    w.monitoring.tick()
    assert w.enqueue.calls == []
    assert w.audit(event="pause_expired") == []
    w.later(1, "h1", "h2")  # the expiry: it ends by itself
    w.monitoring.tick()
    assert sorted(w.enqueue.hosts()) == ["h1", "h2"]
    [expired] = w.audit(event="pause_expired")
    assert (expired["object_id"], expired["actor"], expired["reason"]) == (FLEET, "auto", "storage upgrade")
    assert w.safety.state()["pauses"] == []


def test_a_cluster_pause_holds_only_its_cluster(make: Make) -> None:
    w = make()
    w.register("a1", cluster=C1)
    w.register("b1", cluster=C2)
    w.out("a1", "b1")
    w.healthy("a1", "b1")
    w.safety.pause("c1", "rack work", "bob", None)
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["b1"]
    assert w.decision("a1") == ("paused", "paused cluster c1 by bob: rack work")


def test_resume_lifts_a_pause_and_is_audited(make: Make) -> None:
    w = make()
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    w.safety.pause("c1", "rack work", "bob", None)
    w.monitoring.tick()
    assert w.enqueue.calls == []
    lifted = w.safety.resume("c1", "carol")
    assert (lifted.scope, lifted.owner) == ("c1", "bob")
    [entry] = w.audit(event="resumed")
    assert (entry["object_id"], entry["actor"], entry["reason"]) == ("c1", "carol", "rack work")
    w.later(10, "h1")
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["h1"]
    with pytest.raises(NotFound):
        w.safety.resume("c1", "carol")


def test_pause_refuses_an_unknown_cluster_or_a_past_expiry(make: Make) -> None:
    w = make()
    w.register("h1")
    with pytest.raises(NotFound):
        w.safety.pause("nope", "x", "alice", None)
    with pytest.raises(InvalidInput) as past:
        w.safety.pause(FLEET, "x", "alice", T0)
    assert past.value.field == "expires_at"
    with pytest.raises(NotFound):
        w.safety.resume(FLEET, "alice")
    assert w.audit(object_type="pause") == []
    assert w.safety.state()["pauses"] == []


def test_a_pause_stops_a_queued_automatic_activation_but_not_an_admins(make: Make) -> None:
    w = make()
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    auto = w.queue("h1", "auto-1")
    w.safety.pause(FLEET, "storm", "alice", None)
    out = w.activation.run(auto, "h1")
    assert out.outcome == "paused"
    assert w.agents.init_calls == []
    manual = w.fleet.request_activation("h2", "alice")
    assert w.activation.run(manual, "h2").outcome == "up"
