"""Safety: the observer's gate."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.services.safety_world import T0, TICK, Make, S


def test_the_first_tick_is_quiet_then_activation_starts(make: Make) -> None:
    w = make(replace(TICK, quiet_period=True))
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    assert w.observer()["last_full_tick_at"] is None
    first = w.monitoring.tick()
    assert w.enqueue.calls == []
    assert first.gate is not None and first.gate.startswith("quiet_period: ")
    assert w.decision("h1") == ("observer_unhealthy", first.gate)
    seen = w.observer()
    assert (seen["last_full_tick_at"], seen["gate"], seen["observed_hosts"]) == (T0, first.gate, 1)
    assert w.plan()["h1"]["code"] == "observer_unhealthy"
    assert w.views.describe("h1")["holds"]["observer_gate"] == first.gate
    assert w.safety.state()["gate"] == first.gate
    w.later(10, "h1")
    second = w.monitoring.tick()
    assert second.gate is None
    assert w.enqueue.hosts() == ["h1"]
    assert w.observer()["gate"] is None


def test_a_gated_tick_counts_its_held_decisions(make: Make) -> None:
    w = make(replace(TICK, quiet_period=True))
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    assert w.monitoring.tick().decisions == {"observer_unhealthy": 1}


def test_a_gap_in_ticks_brings_the_quiet_period_back(make: Make) -> None:
    w = make(replace(TICK, quiet_period=True))
    w.register("h1")
    w.monitoring.tick()  # the first: quiet, and nothing to activate anyway
    w.out("h1")
    w.later(31, "h1")  # over three tick intervals without a full tick
    assert w.monitoring.tick().gate is not None
    assert w.enqueue.calls == []
    w.later(30, "h1")  # exactly three intervals is no gap
    assert w.monitoring.tick().gate is None
    assert w.enqueue.hosts() == ["h1"]


def test_stale_monitoring_for_most_of_the_fleet_stops_automatic_activation(make: Make) -> None:
    w = make(replace(TICK, max_silent_share=0.5))
    w.register("h1", "s1", "s2", "s3", "m1", "u1", "u2", "u3")
    w.out("h1", "s1", "s2", "s3")
    # s1..s3 were heard from and answer no more; m1 is in maintenance; u1..u3 never reported
    # (unassigned): neither is counted.
    w.healthy("h1")
    w.fleet.set_maintenance("m1", "admin", None)
    result = w.monitoring.tick()
    assert (result.silent, result.observed, result.gate) == (
        3,
        4,
        "monitoring_stale: 3 of 4 hosts have no fresh data (limit 50%): s1, s2, s3; "
        "the collector or the network may be broken",
    )
    assert w.enqueue.calls == []
    assert w.decision("h1") == ("observer_unhealthy", result.gate)
    assert (w.observer()["silent_hosts"], w.observer()["observed_hosts"]) == (3, 4)
    assert w.plan()["h1"] | {"problems": []} == {
        "host_id": "h1",
        "cluster": "c1",
        "status": "non_operational",
        "next_status": "non_operational",
        "action": "skip",
        "code": "observer_unhealthy",
        "detail": result.gate,
        "problems": [],
    }
    # Two of the silent hosts answer again: one of four is under the limit.
    w.later(10, "h1", "s1", "s2")
    assert w.monitoring.tick().gate is None
    assert sorted(w.enqueue.hosts()) == ["h1", "s1", "s2"]


def test_redis_failing_stops_automatic_activation(make: Make) -> None:
    w = make()
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    w.redis_up[0] = False
    result = w.monitoring.tick()
    assert result.gate is not None and result.gate.startswith("redis_unavailable: ")
    assert w.enqueue.calls == []
    assert w.decision("h1")[0] == "observer_unhealthy"
    w.redis_up[0] = True
    w.later(10, "h1")
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["h1"]


def test_hosts_that_never_reported_do_not_close_the_gate(make: Make) -> None:
    """An inventory imported before its agents run: unassigned hosts are not silent hosts."""
    w = make(replace(TICK, max_silent_share=0.5))
    w.register("h1", *[f"new{i}" for i in range(20)])
    w.out("h1")
    w.healthy("h1")
    result = w.monitoring.tick()
    assert (result.silent, result.observed, result.gate) == (0, 1, None)
    assert w.enqueue.hosts() == ["h1"]
    assert {w.host(f"new{i}").status for i in range(20)} == {S.UNASSIGNED}
