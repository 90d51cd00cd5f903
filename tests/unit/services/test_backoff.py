"""Safety: backoff after failed automatic activations."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from models.errors import NotFound
from tests.fakes.ports import good_report
from tests.unit.services.safety_world import SAFETY, T0, Make, fail_init, within


def test_a_failed_automatic_activation_backs_off_then_retries(make: Make) -> None:
    w = make()
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    fail_init(w, "h1")
    w.monitoring.tick()
    [out] = w.run_sent()
    assert out.outcome == "failed"
    h1 = w.host("h1")
    assert h1.failures == 1
    assert h1.next_attempt_at is not None
    wait_s = (h1.next_attempt_at - T0).total_seconds()
    assert within(wait_s, 5.0, 10.0)  # [base/2, base] after one failure
    [entry] = w.audit(event="backoff")
    assert (entry["object_id"], entry["actor"], entry["reason"]) == ("h1", "auto", "1 failure(s) in a row")
    assert entry["details"]["failures"] == 1
    assert entry["details"]["delay_s"] == pytest.approx(wait_s, abs=1e-3)
    # Until then the tick skips the host with the reason backoff.
    w.clock.now = h1.next_attempt_at - timedelta(seconds=1)
    w.healthy("h1")
    result = w.monitoring.tick()
    assert result.decisions == {"backoff": 1}
    code, detail = w.decision("h1")
    assert code == "backoff" and detail.startswith("1 failed attempt(s) in a row; next attempt after ")
    assert w.plan()["h1"]["code"] == "backoff"
    assert w.views.describe("h1")["holds"]["failures"] == 1
    assert len(w.enqueue.calls) == 1
    # Then it tries again; a second failure waits longer.
    w.clock.now = h1.next_attempt_at
    w.healthy("h1")
    w.monitoring.tick()
    assert len(w.enqueue.calls) == 2
    second_at = w.clock()
    [out] = w.run_sent()
    assert out.outcome == "failed"
    h1 = w.host("h1")
    assert h1.failures == 2 and h1.next_attempt_at is not None
    assert within((h1.next_attempt_at - second_at).total_seconds(), 10.0, 20.0)
    # A success resets the backoff.
    del w.agents.init_results["h1"]
    w.later(20, "h1")
    w.monitoring.tick()
    [out] = w.run_sent()
    assert out.outcome == "up"
    h1 = w.host("h1")
    assert (h1.failures, h1.next_attempt_at) == (0, None)


def test_backoff_grows_and_is_bounded(make: Make) -> None:
    w = make(safety=replace(SAFETY, backoff_max_s=60.0))
    w.register("h1")
    w.out("h1")
    fail_init(w, "h1")
    waits = []
    for n in range(1, 7):
        w.healthy("h1")
        w.queue("h1", f"a{n}")
        started = w.clock()
        assert w.activation.run(f"a{n}", "h1").outcome == "failed"
        h1 = w.host("h1")
        assert h1.failures == n and h1.next_attempt_at is not None
        waits.append((h1.next_attempt_at - started).total_seconds())
        w.clock.now = h1.next_attempt_at
    for n, wait in enumerate(waits, start=1):
        ceiling = min(60.0, 10.0 * 2 ** (n - 1))
        assert within(wait, ceiling / 2, ceiling)


def test_neither_a_manual_failure_nor_a_skip_backs_off(make: Make) -> None:
    w = make()
    w.register("h1", "h2")
    w.out("h1", "h2")
    w.healthy("h1", "h2")
    fail_init(w, "h1")
    manual = w.fleet.request_activation("h1", "alice")
    assert w.activation.run(manual, "h1").outcome == "failed"
    w.agents.reports["h2"] = good_report("h2", T0, kvm=False)
    auto = w.queue("h2", "auto-2")
    assert w.activation.run(auto, "h2").outcome == "has_problems"
    for h in ("h1", "h2"):
        assert (w.host(h).failures, w.host(h).next_attempt_at) == (0, None)
    assert w.audit(event="backoff") == []


def test_an_admin_resets_the_backoff(make: Make) -> None:
    w = make()
    w.register("h1")
    w.out("h1")
    w.healthy("h1")
    fail_init(w, "h1")
    w.monitoring.tick()
    w.run_sent()
    next_at = w.host("h1").next_attempt_at
    assert next_at is not None
    was = w.safety.clear_holds("h1", "alice", quarantine=False)
    assert was == {
        "failures": 1,
        "next_attempt_at": next_at.isoformat(),
        "quarantined_at": None,
        "quarantine_reason": None,
    }
    [entry] = w.audit(event="backoff_reset")
    assert (entry["object_id"], entry["actor"], entry["reason"], entry["details"]) == (
        "h1",
        "alice",
        "admin",
        was,
    )
    w.later(1, "h1")
    w.monitoring.tick()
    assert len(w.enqueue.calls) == 2  # at once, not after the backoff
    with pytest.raises(NotFound):
        w.safety.clear_holds("ghost", "alice", quarantine=True)
