"""The recovery spine end to end: simulator over HTTP, real worker, PostgreSQL and Redis."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import host_status, settle, statuses


def test_new_fleet_comes_up_through_activation(sim: Any, worker: Any, tick: Any, deps: Any) -> None:
    client = sim(hosts=4)
    summary = tick()
    assert summary["hosts"] == 4
    assert summary["enqueued"] == 4
    settle(deps)
    assert set(statuses(deps).values()) == {"up"}
    calls = client.inits()
    assert sorted(c["host_id"] for c in calls) == ["h-0001", "h-0002", "h-0003", "h-0004"]
    assert all(c["outcome"] == "ok" for c in calls)


def test_storage_failure_goes_non_operational_and_recovers_within_two_ticks(
    sim: Any, worker: Any, tick: Any, deps: Any
) -> None:
    client = sim(hosts=3)
    tick()
    settle(deps)
    sd = client.fleet()["clusters"][0]["storage_domains"][0]
    client.inject("sd_down", hosts=["h-0002"], target=sd)

    assert tick()["transitions"] == 1
    row = host_status(deps, "h-0002")
    assert (row["status"], row["reason"]) == ("non_operational", "storage_domain_unreachable")
    assert sd in row["detail"]
    inits_before = len(client.inits("h-0002"))

    client.clear(hosts=["h-0002"])
    ticks = 0
    while host_status(deps, "h-0002")["status"] != "up" and ticks < 2:
        tick()
        ticks += 1
        settle(deps)
    assert host_status(deps, "h-0002")["status"] == "up", f"not up after {ticks} ticks"
    assert len(client.inits("h-0002")) == inits_before + 1


def test_persistent_fault_gets_no_init_call(sim: Any, worker: Any, tick: Any, deps: Any) -> None:
    client = sim(hosts=2)
    tick()
    settle(deps)
    client.reset_record()
    client.inject("kvm_down", hosts=["h-0001"])
    for _ in range(4):
        tick()
        settle(deps)
    row = host_status(deps, "h-0001")
    assert (row["status"], row["reason"]) == ("non_operational", "kvm_not_running")
    assert row["last_decision"] == "has_problems"
    assert client.inits("h-0001") == []
