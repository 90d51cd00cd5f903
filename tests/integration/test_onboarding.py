"""Registration end to end: unassigned until the first report, adopt without an init.

Hosts are registered through the real API over HTTP; a real worker runs the ticks; the
simulator's init record says which hosts got an init.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from harness.sim import Fleet, SimulatorClient, start_in_thread
from harness.sim.register import cluster_from_registration
from tests.integration.api_fixtures import ApiServer
from tests.integration.conftest import host_status, settle, statuses

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)


@pytest.fixture
def fleet_sim(fleet_service: Any) -> Iterator[tuple[SimulatorClient, dict[str, Any]]]:
    """A simulator of four hosts whose clusters are registered, and its fleet; no host yet."""
    server = start_in_thread(Fleet.generate(hosts=4, clusters=1))
    client = SimulatorClient(server.base_url)
    fleet = client.fleet()
    for cluster in fleet["clusters"]:
        fleet_service.register_cluster(cluster_from_registration(cluster), "test")
    yield client, fleet
    client.close()
    server.stop()


def _register(api: ApiServer, fleet: dict[str, Any], adopt: set[str]) -> None:
    with api.client("alice") as http:
        for h in fleet["hosts"]:
            body = {
                "id": h["id"],
                "cluster": h["cluster"],
                "agent_url": h["agent_url"],
                "adopt": h["id"] in adopt,
            }
            answer = http.post("/api/v1/hosts", json=body)
            assert answer.status_code == 201, answer.text
            assert answer.json()["status"] == "unassigned"


def test_adopted_hosts_come_up_without_an_init_the_others_with_one(
    api: ApiServer, fleet_sim: Any, worker: Any, tick: Any, deps: Any
) -> None:
    client, fleet = fleet_sim
    _register(api, fleet, adopt={"h-0001", "h-0002"})
    assert set(statuses(deps).values()) == {"unassigned"}, "unassigned until the first report"
    with api.client("vic") as http:
        shown = http.get("/api/v1/hosts/h-0003").json()
    assert (shown["status"], shown["why_not_recovered"]["code"]) == ("unassigned", "no_report")

    tick()
    settle(deps)
    assert set(statuses(deps).values()) == {"up"}
    inited = sorted(c["host_id"] for c in client.inits())
    assert inited == ["h-0003", "h-0004"], "adopted hosts got no init; the others one each"
    adopted = host_status(deps, "h-0001")
    assert (adopted["reason"], adopted["adopt"]) == ("adopted", True)
    with deps.db.transaction() as conn:
        rows = conn.execute(
            "SELECT details FROM audit_log WHERE object_id = 'h-0001' AND event = 'status_changed'"
        ).fetchall()
    assert [(r["details"]["from"], r["details"]["to"]) for r in rows] == [("unassigned", "up")]


def test_an_adopted_host_with_a_problem_goes_the_normal_way(
    api: ApiServer, fleet_sim: Any, worker: Any, tick: Any, deps: Any
) -> None:
    client, fleet = fleet_sim
    client.inject("kvm_down", hosts=["h-0002"])
    _register(api, fleet, adopt={"h-0001", "h-0002", "h-0003", "h-0004"})
    tick()
    settle(deps)
    row = host_status(deps, "h-0002")
    assert (row["status"], row["reason"]) == ("non_operational", "kvm_not_running")
    assert client.inits() == [], "no init for adopted hosts, nor for one with a problem"

    client.clear(hosts=["h-0002"])
    tick()
    settle(deps)
    assert host_status(deps, "h-0002")["status"] == "up"
    assert [c["host_id"] for c in client.inits()] == ["h-0002"], "back through the normal activation"
