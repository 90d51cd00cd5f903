"""The simulator's protocol v2 bookkeeping (harness.sim.initstate), without HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from harness.sim.initstate import BusyRefused, FenceRefused, InitLedger

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_one_init_at_a_time_and_the_same_pair_is_the_same_init() -> None:
    ledger = InitLedger()
    first, is_new = ledger.begin(5, "a", T0)
    assert is_new and ledger.running is first
    with pytest.raises(BusyRefused) as busy:
        ledger.begin(9, "b", T0)
    assert (busy.value.activation_id, busy.value.fence) == ("a", 5)
    assert ledger.highest == 5, "a refused call raises nothing"
    again, is_new = ledger.begin(5, "a", T0 + timedelta(seconds=1))
    assert again is first and not is_new
    ledger.finish(first, T0 + timedelta(seconds=2), False, "general", "broke")
    assert ledger.running is None
    assert first.status()["status"] == "done" and first.result() == {
        "ok": False,
        "reason": "general",
        "detail": "broke",
    }
    done, is_new = ledger.begin(5, "a", T0 + timedelta(seconds=3))
    assert done is first and not is_new


def test_stale_fences_are_refused_and_fence_only_rises() -> None:
    ledger = InitLedger()
    record, _ = ledger.begin(5, "a", T0)
    ledger.finish(record, T0, True)
    with pytest.raises(FenceRefused) as stale:
        ledger.begin(4, "b", T0)
    assert stale.value.highest == 5
    assert ledger.raise_fence(3) == 5
    assert ledger.raise_fence(8) == 8
    with pytest.raises(FenceRefused):
        ledger.begin(7, "c", T0)
    same_fence, is_new = ledger.begin(8, "d", T0)
    assert is_new and same_fence.fence == 8
    assert ledger.begin(5, "a", T0)[0] is record, "an ended init is still itself, whatever the fence now"


def test_a_v1_agent_runs_everything_it_is_sent_and_results_are_bounded() -> None:
    ledger = InitLedger(keep=3)
    for n in range(5):
        ledger.begin(1, f"a{n}", T0, exclusive=False)
    assert ledger.running is not None and ledger.running.activation_id == "a0"
    assert ledger.find("a0") is None and ledger.find("a4") is not None
    with pytest.raises(FenceRefused):
        ledger.begin(0, "late", T0, exclusive=False)
