"""Fleet simulator: reports, faults, fences, the init record and the control interface."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from harness.sim import (
    FaultKind,
    FaultSpec,
    Fleet,
    InitCall,
    SimulatorClient,
    SimulatorError,
    create_app,
)
from harness.sim.record import find_overlaps
from models.assessment import assess
from models.domain import Cluster
from models.report import parse_report

REPORT_KEYS = {
    "host_id",
    "reported_at",
    "kvm",
    "version",
    "cpu_flags",
    "networks",
    "storage_domains",
    "vms_running",
    "mem_free_mb",
}


@pytest.fixture
def fleet() -> Fleet:
    return Fleet.generate(hosts=6, clusters=2, shared_storage_domain=True)


class _SyncASGITransport(httpx.BaseTransport):
    """Serve sync httpx requests from the ASGI app, one event loop per request, no socket."""

    def __init__(self, app: FastAPI) -> None:
        self._inner = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def call() -> httpx.Response:
            response = await self._inner.handle_async_request(request)
            content = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=content)

        return asyncio.run(call())


@pytest.fixture
def client(fleet: Fleet) -> Iterator[httpx.Client]:
    transport = _SyncASGITransport(create_app(fleet))
    with httpx.Client(transport=transport, base_url="http://testserver") as http:
        yield http


def _run_async(fleet: Fleet, scenario: Any) -> Any:
    async def main() -> Any:
        transport = httpx.ASGITransport(app=create_app(fleet))
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            return await scenario(http)

    return asyncio.run(main())


def _cluster(fleet: Fleet, cluster_id: str) -> Cluster:
    c = fleet.clusters[cluster_id]
    return Cluster(
        c.id,
        frozenset(c.required_networks),
        frozenset(c.storage_domains),
        c.min_version,
        frozenset(c.cpu_flags),
    )


def test_generate_is_deterministic_round_robin() -> None:
    fleet = Fleet.generate(hosts=5, clusters=2, storage_domains_per_cluster=2)
    assert list(fleet.clusters) == ["c-1", "c-2"]
    assert list(fleet.hosts) == ["h-0001", "h-0002", "h-0003", "h-0004", "h-0005"]
    assert [h.cluster for h in fleet.hosts.values()] == ["c-1", "c-2", "c-1", "c-2", "c-1"]
    assert fleet.clusters["c-1"].storage_domains == ["sd-c-1-1", "sd-c-1-2"]
    assert fleet.clusters["c-1"].required_networks == ["mgmt", "vmnet"]
    again = Fleet.generate(hosts=5, clusters=2)
    assert [h.mem_free_mb for h in again.hosts.values()] == [h.mem_free_mb for h in fleet.hosts.values()]
    big = Fleet.generate(hosts=10_001, clusters=3)
    assert (next(iter(big.hosts)), list(big.hosts)[-1]) == ("h-0001", "h-10001")
    shared = Fleet.generate(hosts=4, clusters=2, shared_storage_domain=True)
    assert all("sd-shared" in c.storage_domains for c in shared.clusters.values())


def test_healthy_report_has_appendix_a_shape_and_passes_assessment(
    fleet: Fleet, client: httpx.Client
) -> None:
    response = client.get("/agents/h-0002/report")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == REPORT_KEYS | {"protocol", "init", "agent"}
    assert (body["protocol"], body["init"]) == (2, None)
    assert body["host_id"] == "h-0002"
    assert body["reported_at"].endswith("Z")
    assert body["kvm"] is True
    assert body["version"] == "4.5.2"
    assert body["cpu_flags"] == ["vmx", "sse4_2"]
    assert body["networks"] == {"mgmt": True, "vmnet": True}
    assert body["storage_domains"] == {"sd-c-2-1": True, "sd-c-2-2": True, "sd-shared": True}
    assert isinstance(body["vms_running"], int)
    assert isinstance(body["mem_free_mb"], int)
    report = parse_report(body, "h-0002")
    assert abs(datetime.now(UTC) - report.reported_at) < timedelta(seconds=5)
    assessment = assess(report, _cluster(fleet, "c-2"), datetime.now(UTC), 60.0)
    assert assessment.is_healthy


@pytest.mark.parametrize(
    ("fault", "params", "path", "expected", "init_reason"),
    [
        ("sd_down", {"target": "sd-c-1-2"}, ("storage_domains", "sd-c-1-2"), False,
         "storage_domain_unreachable"),
        ("nic_down", {"target": "vmnet"}, ("networks", "vmnet"), False, "network_interface_down"),
        ("kvm_down", {}, ("kvm",), False, "kvm_not_running"),
        ("version", {"version": "4.4.9"}, ("version",), "4.4.9", "version_incompatible"),
    ],
)  # fmt: skip
def test_each_fault_shows_in_report_and_fails_init(
    client: httpx.Client,
    fault: str,
    params: dict[str, str],
    path: tuple[str, ...],
    expected: object,
    init_reason: str,
) -> None:
    injected = client.post("/control/faults", json={"fault": fault, "hosts": ["h-0001"], **params})
    assert injected.status_code == 200, injected.text
    assert injected.json()["hosts"] == ["h-0001"]
    value: Any = client.get("/agents/h-0001/report").json()
    for key in path:
        value = value[key]
    assert value == expected
    init = client.post("/agents/h-0001/init", json={"fence": 1, "activation_id": "a1"}).json()
    assert init["ok"] is False
    assert init["reason"] == init_reason
    assert init["detail"]
    assert client.post("/control/clear", json={"hosts": ["h-0001"]}).status_code == 200
    healthy = client.post("/agents/h-0001/init", json={"fence": 2, "activation_id": "a2"})
    assert healthy.json() == {"ok": True}
    assert client.get("/control/fleet").json()["hosts"][0]["faults"] == {}


def test_sd_down_by_storage_domain_hits_every_host_that_has_it(client: httpx.Client) -> None:
    body = {"fault": "sd_down", "storage_domain": "sd-shared"}
    answer = client.post("/control/faults", json=body).json()
    assert answer["count"] == 6
    for host_id in answer["hosts"]:
        report = client.get(f"/agents/{host_id}/report").json()
        assert report["storage_domains"]["sd-shared"] is False
    clear = {"storage_domain": "sd-shared", "fault": "sd_down"}
    assert client.post("/control/clear", json=clear).json()["count"] == 6
    assert client.get("/agents/h-0003/report").json()["storage_domains"]["sd-shared"] is True


def test_init_fail_answers_given_reason(client: httpx.Client) -> None:
    body = {"fault": "init_fail", "cluster": "c-1", "reason": "general", "detail": "vdsm broke"}
    assert client.post("/control/faults", json=body).json()["count"] == 3
    init = client.post("/agents/h-0003/init", json={"fence": 5, "activation_id": "a"}).json()
    assert init == {"ok": False, "reason": "general", "detail": "vdsm broke"}
    calls = client.get("/control/inits", params={"host_id": "h-0003"}).json()["calls"]
    assert [(c["outcome"], c["reason"]) for c in calls] == [("failed", "general")]


def test_silent_agent_never_answers_report_or_init(fleet: Fleet) -> None:
    fleet.inject(FaultSpec(FaultKind.SILENT), ["h-0001"])

    async def scenario(http: httpx.AsyncClient) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(http.get("/agents/h-0001/report"), 0.3)
        body = {"fence": 1, "activation_id": "a"}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(http.post("/agents/h-0001/init", json=body), 0.3)
        assert (await http.get("/agents/h-0002/report")).status_code == 200

    _run_async(fleet, scenario)
    assert fleet.inits == []


def test_report_delay_slows_the_report(fleet: Fleet) -> None:
    fleet.inject(FaultSpec(FaultKind.REPORT_DELAY, seconds=0.2), ["h-0001"])

    async def scenario(http: httpx.AsyncClient) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await http.get("/agents/h-0001/report")).status_code == 200
        return loop.time() - started

    assert _run_async(fleet, scenario) >= 0.2


def test_stale_fence_refused_with_highest_and_equal_accepted(client: httpx.Client) -> None:
    url = "/agents/h-0001/init"
    assert client.post(url, json={"fence": 7, "activation_id": "a"}).json() == {"ok": True}
    stale = client.post(url, json={"fence": 6, "activation_id": "b"})
    assert stale.status_code == 409
    assert stale.json() == {"error": "stale_fence", "highest": 7}
    assert client.post(url, json={"fence": 7, "activation_id": "c"}).json() == {"ok": True}
    calls = client.get("/control/inits").json()["calls"]
    assert [(c["fence"], c["outcome"]) for c in calls] == [
        (7, "ok"),
        (6, "stale_fence"),
        (7, "ok"),
    ]
    assert all(c["ended_at"] is not None for c in calls)
    other = client.post("/agents/h-0002/init", json={"fence": 1, "activation_id": "d"})
    assert other.json() == {"ok": True}


def test_concurrent_slow_inits_on_a_v1_agent_overlap_and_sequential_do_not(fleet: Fleet) -> None:
    fleet.set_protocol(["h-0001", "h-0002"], 1)
    fleet.inject(FaultSpec(FaultKind.INIT_DELAY, seconds=0.2), ["h-0001", "h-0002"])

    async def scenario(http: httpx.AsyncClient) -> dict[str, Any]:
        first = http.post("/agents/h-0001/init", json={"fence": 1, "activation_id": "a"})
        second = http.post("/agents/h-0001/init", json={"fence": 2, "activation_id": "b"})
        answers = await asyncio.gather(first, second)
        assert [a.json() for a in answers] == [{"ok": True}, {"ok": True}]
        for fence in (1, 2):
            body = {"fence": fence, "activation_id": f"s{fence}"}
            assert (await http.post("/agents/h-0002/init", json=body)).json() == {"ok": True}
        found: dict[str, Any] = (await http.get("/control/overlaps")).json()
        return found

    found = _run_async(fleet, scenario)
    assert found["count"] == 1
    assert list(found["hosts"]) == ["h-0001"]
    pair = found["hosts"]["h-0001"][0]
    assert {pair[0]["activation_id"], pair[1]["activation_id"]} == {"a", "b"}


def test_refused_call_during_running_init_is_not_an_overlap(fleet: Fleet) -> None:
    fleet.inject(FaultSpec(FaultKind.INIT_DELAY, seconds=0.2), ["h-0001"])

    async def scenario(http: httpx.AsyncClient) -> list[int]:
        running = http.post("/agents/h-0001/init", json={"fence": 5, "activation_id": "a"})
        late = http.post("/agents/h-0001/init", json={"fence": 4, "activation_id": "b"})
        answers = await asyncio.gather(running, late)
        return [a.status_code for a in answers]

    assert _run_async(fleet, scenario) == [200, 409]
    assert fleet.overlaps() == {}


def test_running_call_counts_as_open_ended() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    done = InitCall("h", 1, "a", start, start + timedelta(seconds=1), "ok")
    running = InitCall("h", 2, "b", start + timedelta(seconds=0.5))
    after = InitCall("h", 3, "c", start + timedelta(seconds=1), start + timedelta(seconds=2), "ok")
    assert find_overlaps([done, after]) == []
    assert find_overlaps([after, running, done]) == [(done, running), (running, after)]


def test_storage_domain_connect_fences_outcome_and_overlaps(fleet: Fleet) -> None:
    fleet.inject(FaultSpec(FaultKind.INIT_DELAY, seconds=0.1), ["h-0001", "h-0003"])
    url = "/agents/{}/storage-domains/sd-shared/connect"

    async def scenario(http: httpx.AsyncClient) -> None:
        together = await asyncio.gather(
            http.post(url.format("h-0001"), json={"fence": 3}),
            http.post(url.format("h-0003"), json={"fence": 3}),
        )
        assert [a.json() for a in together] == [{"ok": True}, {"ok": True}]
        stale = await http.post(url.format("h-0001"), json={"fence": 2})
        assert (stale.status_code, stale.json()) == (409, {"error": "stale_fence", "highest": 3})
        found = (await http.get("/control/overlaps")).json()
        assert found["storage_domain_count"] == 0
        await asyncio.gather(
            http.post(url.format("h-0001"), json={"fence": 4}),
            http.post(url.format("h-0003"), json={"fence": 5}),
        )
        found = (await http.get("/control/overlaps")).json()
        assert found["storage_domain_count"] == 1
        missing = await http.post("/agents/h-0001/storage-domains/sd-c-2-1/connect", json={"fence": 1})
        assert missing.status_code == 404

    _run_async(fleet, scenario)
    fleet.inject(FaultSpec(FaultKind.SD_DOWN, target="sd-shared"), ["h-0001"])

    async def unreachable(http: httpx.AsyncClient) -> None:
        answer = (await http.post(url.format("h-0001"), json={"fence": 9})).json()
        assert answer["ok"] is False
        assert answer["reason"] == "storage_domain_unreachable"

    _run_async(fleet, unreachable)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"fault": "meltdown", "hosts": ["h-0001"]}, "fault"),
        ({"fault": "sd_down", "hosts": ["h-0001"]}, "target"),
        ({"fault": "sd_down", "hosts": ["h-0001"], "target": "sd-nowhere"}, "target"),
        ({"fault": "nic_down", "hosts": ["h-0001"], "target": "wlan"}, "target"),
        ({"fault": "kvm_down", "hots": ["h-0001"]}, "hots"),
        ({"fault": "kvm_down"}, "hosts"),
        ({"fault": "kvm_down", "hosts": ["h-9999"]}, "hosts"),
        ({"fault": "kvm_down", "cluster": "c-9"}, "cluster"),
        ({"fault": "kvm_down", "storage_domain": "sd-nowhere"}, "storage_domain"),
        ({"fault": "kvm_down", "all": True, "seconds": 3}, "seconds"),
        ({"fault": "init_delay", "all": True}, "seconds"),
        ({"fault": "init_delay", "all": True, "seconds": -1}, "seconds"),
        ({"fault": "version", "all": True}, "version"),
        ({"fault": "init_fail", "all": True, "reason": ""}, "reason"),
    ],
)
def test_bad_fault_body_is_422_naming_the_field(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    response = client.post("/control/faults", json=body)
    assert response.status_code == 422, response.text
    locs = [error["loc"] for error in response.json()["detail"]]
    assert any(loc[-1] == field for loc in locs), locs
    assert client.get("/control/fleet").json()["hosts"][0]["faults"] == {}


def test_unknown_host_is_404_and_bad_init_body_is_422(client: httpx.Client) -> None:
    assert client.get("/agents/h-9999/report").status_code == 404
    init = client.post("/agents/h-9999/init", json={"fence": 1, "activation_id": "a"})
    assert init.status_code == 404
    assert "h-9999" in init.json()["detail"]
    bad = client.post("/agents/h-0001/init", json={"fence": "1", "activation_id": "a"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "fence"]
    assert client.get("/control/inits", params={"host_id": "h-9999"}).status_code == 404


def test_control_fleet_lists_registration_data_and_agent_urls(client: httpx.Client) -> None:
    body = client.get("/control/fleet").json()
    assert body["count"] == 6
    assert body["clusters"][0] == {
        "id": "c-1",
        "required_networks": ["mgmt", "vmnet"],
        "storage_domains": ["sd-c-1-1", "sd-c-1-2", "sd-shared"],
        "min_version": "4.5",
        "cpu_flags": ["vmx"],
    }
    first = body["hosts"][0]
    assert first == {
        "id": "h-0001",
        "cluster": "c-1",
        "agent_url": "http://testserver/agents/h-0001",
        "faults": {},
        "protocol": 2,
    }
    only = client.get("/control/fleet", params={"cluster": "c-2"}).json()
    assert {h["cluster"] for h in only["hosts"]} == {"c-2"}
    assert client.get("/healthz").json() == {"status": "ok", "hosts": 6, "clusters": 2}


def test_simulator_client_drives_the_control_interface(client: httpx.Client) -> None:
    sim = SimulatorClient("http://testserver", client=client)
    assert sim.inject("kvm_down", cluster="c-2")["count"] == 3
    faults = {h["id"]: h["faults"] for h in sim.fleet()["hosts"]}
    assert faults["h-0002"] == {"kvm_down": True}
    sim.inject("init_delay", all_hosts=True, seconds=0.0)
    sim.clear(fault="kvm_down")
    assert client.get("/agents/h-0002/report").json()["kvm"] is True
    client.post("/agents/h-0001/init", json={"fence": 4, "activation_id": "a"})
    assert [c["fence"] for c in sim.inits("h-0001")] == [4]
    assert sim.overlaps()["count"] == 0
    sim.reset_record(fences=True)
    assert sim.inits() == []
    assert client.post("/agents/h-0001/init", json={"fence": 1, "activation_id": "b"}).json()["ok"]
    with pytest.raises(SimulatorError) as raised:
        sim.inject("sd_down", hosts=["h-0001"])
    assert raised.value.status_code == 422


@pytest.mark.parametrize(
    ("fault", "target", "key", "section"),
    [
        ("pool_stopped", "sd-shared", "storage_domain:sd-shared", "storage_domains"),
        ("net_stopped", "vmnet", "network:vmnet", "networks"),
    ],
)
def test_what_init_repairs_is_marked_repairable_and_an_init_repairs_it(
    client: httpx.Client, fleet: Fleet, fault: str, target: str, key: str, section: str
) -> None:
    body = {"fault": fault, "hosts": ["h-0001"], "target": target}
    assert client.post("/control/faults", json=body).status_code == 200
    report = client.get("/agents/h-0001/report").json()
    assert report[section][target] is False
    assert report["repairable"] == [key] and "inactive" in report["details"][key]
    assessed = assess(parse_report(report, "h-0001"), _cluster(fleet, "c-1"), datetime.now(UTC), 30)
    assert assessed.is_repairable
    assert client.post("/agents/h-0001/init", json={"fence": 1, "activation_id": "a1"}).json() == {"ok": True}
    [call] = client.get("/control/inits", params={"host_id": "h-0001"}).json()["calls"]
    assert call["faulted"] is False  # a repairable fault is not one monitoring forbids an init for
    report = client.get("/agents/h-0001/report").json()
    assert report[section][target] is True and "repairable" not in report
    assert client.get("/control/fleet").json()["hosts"][0]["faults"] == {}


def test_a_stopped_pool_whose_storage_is_gone_is_not_repairable(client: httpx.Client, fleet: Fleet) -> None:
    for fault in ("pool_stopped", "sd_down"):
        assert (
            client.post(
                "/control/faults", json={"fault": fault, "hosts": ["h-0001"], "target": "sd-shared"}
            ).status_code
            == 200
        )
    report = client.get("/agents/h-0001/report").json()
    assert "repairable" not in report
    init = client.post("/agents/h-0001/init", json={"fence": 1, "activation_id": "a1"}).json()
    assert init["ok"] is False and init["reason"] == "storage_domain_unreachable"
    [call] = client.get("/control/inits", params={"host_id": "h-0001"}).json()["calls"]
    assert call["faulted"] is True
