"""Safety: flap quarantine."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from tests.unit.services.safety_world import SAFETY, T0, Make, S, fail_init, fail_until_quarantined


def test_k_failures_in_the_window_quarantine_the_host(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    w.out("h1")
    fail_until_quarantined(w, "h1", 2)
    assert w.host("h1").quarantined_at is None
    fail_until_quarantined(w, "h1", 1)
    h1 = w.host("h1")
    assert h1.quarantined_at is not None
    [entry] = w.audit(event="quarantined")
    assert (entry["object_id"], entry["actor"], entry["reason"]) == ("h1", "auto", "flapping")
    assert entry["details"]["detail"].startswith("3 automatic recoveries or failures within 3600s")
    # However long the wait and however clean the report, the tick leaves it alone.
    del w.agents.init_results["h1"]
    w.later(7200, "h1")
    result = w.monitoring.tick()
    assert w.enqueue.calls == []
    assert result.decisions == {"quarantined": 1}
    assert w.decision("h1")[0] == "quarantined"
    assert w.plan()["h1"]["code"] == "quarantined"
    holds = w.views.describe("h1")["holds"]
    assert holds["quarantined_at"] == h1.quarantined_at.isoformat()
    assert holds["quarantine_reason"].startswith("3 automatic recoveries or failures")


def test_k_automatic_recoveries_in_the_window_quarantine_the_host(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    # A newly registered host's first activation brings it up: no recovery, not counted.
    w.later(10, "h1")
    w.monitoring.tick()
    assert [o.outcome for o in w.run_sent()] == ["up"]
    for n in range(3):
        assert w.host("h1").quarantined_at is None, f"quarantined after {n} recoveries"
        w.out("h1")
        w.later(10, "h1")
        w.monitoring.tick()
        assert [o.outcome for o in w.run_sent()] == ["up"]
    h1 = w.host("h1")
    assert (h1.status, h1.quarantined_at) == (S.UP, T0 + timedelta(seconds=40))
    assert w.audit(event="quarantined")[0]["details"]["detail"].startswith("3 automatic recoveries")
    # Out again: it stays out until an admin looks.
    w.out("h1")
    w.later(10, "h1")
    w.monitoring.tick()
    assert len(w.enqueue.calls) == 4
    assert w.decision("h1")[0] == "quarantined"


def test_failures_before_the_first_up_count_but_the_first_up_does_not(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    w.out("h1")
    fail_until_quarantined(w, "h1", 2)  # two real failures
    del w.agents.init_results["h1"]
    w.healthy("h1")
    first_up = w.queue("h1", "first-up")
    assert w.activation.run(first_up, "h1").outcome == "up"
    assert w.host("h1").quarantined_at is None  # 2 counted, the first up is not
    w.out("h1")
    w.later(10, "h1")
    assert w.activation.run(w.queue("h1", "recovery"), "h1").outcome == "up"
    assert w.host("h1").quarantined_at is not None  # the third: a real recovery


def test_ends_outside_the_window_do_not_quarantine(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=2, flap_window_s=60.0, backoff_max_s=20.0))
    w.register("h1")
    w.out("h1")
    fail_init(w, "h1")
    for n in range(3):
        w.healthy("h1")
        w.queue("h1", f"a{n}")
        w.activation.run(f"a{n}", "h1")
        w.clock.advance(61)
    assert w.host("h1").quarantined_at is None
    assert w.host("h1").failures == 3


def test_a_manual_success_ends_the_quarantine_and_restarts_the_count(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=3))
    w.register("h1")
    w.out("h1")
    fail_until_quarantined(w, "h1", 3)
    assert w.host("h1").quarantined_at is not None
    # An admin's failed attempt changes nothing.
    w.healthy("h1")
    failed = w.fleet.request_activation("h1", "alice")
    assert w.activation.run(failed, "h1").outcome == "failed"
    assert w.host("h1").quarantined_at is not None
    del w.agents.init_results["h1"]
    ok = w.fleet.request_activation("h1", "alice")
    assert w.activation.run(ok, "h1").outcome == "up"
    h1 = w.host("h1")
    assert (h1.quarantined_at, h1.failures, h1.next_attempt_at) == (None, 0, None)
    [entry] = w.audit(event="quarantine_cleared")
    assert (entry["actor"], entry["reason"], entry["details"]) == (
        "alice",
        "manual_activation",
        {"activation_id": ok},
    )
    # The three failures before are forgotten: one more does not quarantine it again.
    w.out("h1")
    fail_until_quarantined(w, "h1", 1)
    assert w.host("h1").quarantined_at is None
    assert len(w.audit(event="quarantined")) == 1


def test_an_admin_clears_the_quarantine(make: Make) -> None:
    w = make(safety=replace(SAFETY, flap_limit=2))
    w.register("h1")
    w.out("h1")
    fail_until_quarantined(w, "h1", 2)
    h1 = w.host("h1")
    assert h1.quarantined_at is not None and h1.next_attempt_at is not None
    # Resetting the backoff alone keeps the quarantine.
    w.safety.clear_holds("h1", "alice", quarantine=False)
    assert w.host("h1").quarantined_at == h1.quarantined_at
    was = w.safety.clear_holds("h1", "bob", quarantine=True)
    assert was["quarantined_at"] == h1.quarantined_at.isoformat()
    assert was["quarantine_reason"].startswith("2 automatic recoveries or failures")
    [entry] = w.audit(event="quarantine_cleared")
    assert (entry["object_id"], entry["actor"], entry["reason"]) == ("h1", "bob", "admin")
    assert w.host("h1").quarantined_at is None
    del w.agents.init_results["h1"]
    w.later(1, "h1")
    w.monitoring.tick()
    assert w.enqueue.hosts() == ["h1"]
    assert [o.outcome for o in w.run_sent()] == ["up"]
    assert w.host("h1").quarantined_at is None  # one recovery after the clear is not flapping
