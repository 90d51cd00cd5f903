"""Safety: caps in the tick."""

from __future__ import annotations

from dataclasses import replace

from models.safety import CapPolicy
from tests.unit.services.safety_world import C1, C2, TICK, Make, S, capped


def test_the_tick_admits_at_most_the_cap_oldest_first_and_says_why_the_rest_wait(make: Make) -> None:
    w = make(capped(share=0.25))
    hosts = ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"]
    w.register(*hosts)
    for h in ["h6", "h3", "h8", "h1", "h5", "h2", "h7", "h4"]:  # out one second apart
        w.out(h)
        w.clock.advance(1)
    w.healthy(*hosts)
    result = w.monitoring.tick()
    assert sorted(w.enqueue.hosts()) == ["h3", "h6"]  # the two that went out first
    assert (result.enqueued, result.capped) == (2, 6)
    assert result.decisions == {"activate": 2, "capped": 6}
    for h in ["h1", "h2", "h4", "h5", "h7", "h8"]:
        assert w.decision(h) == ("capped", "cluster c1 cap reached: 2/2 in flight")
    assert w.decision("h6")[0] == "activate"
    assert w.in_flight() == {"c1": 2}
    # The plan shows the same: activations in flight take the slots, the others wait.
    plan = w.plan()
    assert {h: p["code"] for h, p in plan.items()} == {
        **{h: "capped" for h in ["h1", "h2", "h4", "h5", "h7", "h8"]},
        "h3": "activation_in_flight",
        "h6": "activation_in_flight",
    }
    assert plan["h1"]["action"] == "skip"
    assert plan["h1"]["detail"] == "cluster c1 cap reached: 2/2 in flight"
    # And the host's view says why it is not back, since the tick that capped it.
    assert w.views.describe("h8")["why_not_recovered"] == {
        "code": "capped",
        "detail": "cluster c1 cap reached: 2/2 in flight",
        "at": w.clock().isoformat(),
    }


def test_ticks_in_a_row_never_exceed_the_cap_and_the_next_wave_follows(make: Make) -> None:
    w = make(capped(number=2))
    hosts = [f"h{i}" for i in range(1, 7)]
    w.register(*hosts)
    for h in hosts:
        w.out(h)
        w.clock.advance(1)
    w.healthy(*hosts)
    waves: list[list[str]] = []
    for _ in range(6):
        before = len(w.enqueue.calls)
        w.monitoring.tick()
        assert sum(w.in_flight().values()) <= 2
        w.monitoring.tick()  # a second tick at once admits nobody more
        assert len(w.enqueue.calls) - before <= 2
        assert sum(w.in_flight().values()) <= 2
        waves.append(sorted(w.enqueue.hosts()[before:]))
        assert all(o.outcome == "up" for o in w.run_sent())
        w.later(10, *hosts)
    assert waves[:3] == [["h1", "h2"], ["h3", "h4"], ["h5", "h6"]]
    assert all(w.host(h).status is S.UP for h in hosts)


def test_the_fleet_cap_holds_across_clusters(make: Make) -> None:
    w = make(capped(share=1.0, fleet=3))
    w.register("a1", "a2", cluster=C1)
    w.register("b1", "b2", cluster=C2)
    for h in ["b1", "a1", "a2", "b2"]:
        w.out(h)
        w.clock.advance(1)
    w.healthy("a1", "a2", "b1", "b2")
    result = w.monitoring.tick()
    assert sorted(w.enqueue.hosts()) == ["a1", "a2", "b1"]
    assert result.capped == 1
    assert w.decision("b2") == ("capped", "fleet cap reached: 3/3 activations in flight")
    assert w.in_flight() == {"c1": 2, "c2": 1}


def test_a_manual_activation_counts_against_the_cap(make: Make) -> None:
    w = make(capped(number=1))
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    w.fleet.request_activation("h2", "alice")
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["h2"]  # the admin's only
    assert w.decision("h1") == ("capped", "cluster c1 cap reached: 1/1 in flight")


def test_the_queue_room_admits_only_what_the_pool_can_start_before_messages_expire(make: Make) -> None:
    """Issue 14: a deep queue is not built: a tick admits no more than the queue's room.

    Activations queued and not started count against it; once the pool starts them (``sending``
    and on), the room is free again and the next tick admits the next wave.
    """
    w = make(replace(TICK, caps=CapPolicy(cluster_share=1.0, fleet_max=1000, queue_room=3)))
    hosts = [f"h{i}" for i in range(1, 8)]
    w.register(*hosts)
    for h in hosts:
        w.out(h)
        w.clock.advance(1)
    w.healthy(*hosts)
    result = w.monitoring.tick()
    assert sorted(w.enqueue.hosts()) == ["h1", "h2", "h3"]
    assert (result.enqueued, result.capped) == (3, 4)
    assert w.decision("h4") == ("capped", "activation queue full: 3/3 activations not started yet")
    assert w.plan()["h4"]["detail"] == "activation queue full: 3/3 activations not started yet"
    w.later(10, *hosts)
    assert w.monitoring.tick().enqueued == 0  # none started yet: no room
    assert all(o.outcome == "up" for o in w.run_sent())
    w.later(10, *hosts)
    w.monitoring.tick()
    assert sorted(w.enqueue.hosts()[3:]) == ["h4", "h5", "h6"]
