"""The simulator's fenced calls on the agent's protocol state (hostagent.protocol), without HTTP.

The state machine itself (busy, idempotence, fences, bounded results) is tested in
tests/hostagent/test_protocol.py; here what the simulator adds: v1 agents, resets, cancelling.
"""

from __future__ import annotations

import asyncio

import pytest

from harness.sim import FaultKind, FaultSpec, Fleet
from harness.sim.calls import CANCELLED_DETAIL
from hostagent.protocol import InitBusy
from models.errors import StaleFence


def _fleet(protocol: int, delay_s: float) -> Fleet:
    fleet = Fleet.generate(hosts=1, clusters=1, protocol=protocol)
    fleet.inject(FaultSpec(FaultKind.INIT_DELAY, seconds=delay_s), ["h-0001"])
    return fleet


def test_a_v1_agent_runs_everything_it_is_sent_above_its_highest_fence() -> None:
    fleet = _fleet(protocol=1, delay_s=0.1)

    async def scenario() -> None:
        answers = await asyncio.gather(
            fleet.init("h-0001", 1, "a"), fleet.init("h-0001", 2, "b"), fleet.init("h-0001", 2, "b")
        )
        assert [a.body for a in answers] == [{"ok": True}] * 3
        with pytest.raises(StaleFence) as stale:
            await fleet.init("h-0001", 1, "late")
        assert stale.value.highest == 2

    asyncio.run(scenario())
    assert [(c.activation_id, c.outcome) for c in fleet.inits] == [
        ("a", "ok"),
        ("b", "ok"),
        ("b", "ok"),
        ("late", "stale_fence"),
    ]
    assert len(fleet.overlaps()["h-0001"]) == 3
    assert fleet.highest_fence("h-0001") == 2
    assert fleet.calls.status(("h-0001",), "a") is None, "a v1 agent keeps no status"


def test_a_v2_agent_refuses_a_second_init_and_a_retry_waits_for_the_first() -> None:
    fleet = _fleet(protocol=2, delay_s=0.1)

    async def scenario() -> None:
        first = asyncio.create_task(fleet.init("h-0001", 3, "a"))
        await asyncio.sleep(0.01)
        status = fleet.calls.status(("h-0001",), "a")
        assert status is not None and status["status"] == "running"
        holder = {"activation_id": "a", "fence": 3, "started_at": status["started_at"]}
        assert fleet.report("h-0001")["init"] == holder
        with pytest.raises(InitBusy):
            await fleet.init("h-0001", 4, "b")
        retry = await fleet.init("h-0001", 3, "a")
        assert retry.body == {"ok": True} and (await first).body == {"ok": True}

    asyncio.run(scenario())
    assert [(c.activation_id, c.outcome) for c in fleet.inits] == [("a", "ok"), ("b", "busy")]


def test_resetting_fences_starts_every_agent_afresh() -> None:
    fleet = _fleet(protocol=2, delay_s=0.0)

    async def scenario() -> None:
        await fleet.init("h-0001", 5, "a")
        await fleet.connect("h-0001", "sd-c-1-1", 7, "c")
        fleet.reset_record(fences=True)
        assert fleet.inits == [] and fleet.highest_fence("h-0001") == 0
        assert fleet.calls.status(("h-0001",), "a") is None
        assert (await fleet.init("h-0001", 1, "b")).body == {"ok": True}
        assert (await fleet.connect("h-0001", "sd-c-1-1", 1, "d")).body == {"ok": True}

    asyncio.run(scenario())


def test_cancelling_a_running_init_ends_its_record_as_failed() -> None:
    fleet = _fleet(protocol=2, delay_s=3600)

    async def scenario() -> None:
        answer = await fleet.init("h-0001", 1, "hung", wait=False)
        assert answer.is_running
        await fleet.calls.cancel_all()

    asyncio.run(scenario())
    status = fleet.calls.status(("h-0001",), "hung")
    assert status is not None
    assert (status["status"], status["ok"], status["reason"]) == ("done", False, "activation_failed")
    assert status["detail"] == CANCELLED_DETAIL
    assert fleet.calls.running("h-0001") is None
