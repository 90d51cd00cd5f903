"""The product against simulated agents speaking protocol v1 and v2: same recovery, no overlap."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.conftest import host_status, settle, statuses


@pytest.mark.parametrize("protocol", [1, 2])
def test_fleet_comes_up_and_recovers_on_either_protocol(
    sim: Any, worker: Any, tick: Any, deps: Any, protocol: int
) -> None:
    client = sim(hosts=3, protocol=protocol)
    assert {h["protocol"] for h in client.fleet()["hosts"]} == {protocol}
    tick()
    settle(deps)
    assert set(statuses(deps).values()) == {"up"}
    sd = client.fleet()["clusters"][0]["storage_domains"][0]
    client.inject("sd_down", hosts=["h-0002"], target=sd)
    tick()
    assert host_status(deps, "h-0002")["reason"] == "storage_domain_unreachable"
    client.clear(hosts=["h-0002"])
    for _ in range(3):
        if host_status(deps, "h-0002")["status"] == "up":
            break
        tick()
        settle(deps)
    assert host_status(deps, "h-0002")["status"] == "up"
    calls = client.inits()
    assert [c["outcome"] for c in calls] == ["ok"] * 4
    assert client.overlaps()["count"] == 0
