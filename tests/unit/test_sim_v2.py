"""Fleet simulator on agent protocol v2 over a real loopback server, and its v1 mode."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from harness.sim import FaultKind, FaultSpec, Fleet, RunningSimulator, SimulatorClient, start_in_thread
from models.report_wire import decode_report

TOKEN = "s3cret-agent-token"  # noqa: S105 - a test token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ASYNC = {**AUTH, "Prefer": "respond-async"}

Serve = Callable[..., RunningSimulator]


@pytest.fixture
def serve() -> Iterator[Serve]:
    running: list[RunningSimulator] = []

    def start(fleet: Fleet, token: str | None = TOKEN) -> RunningSimulator:
        server = start_in_thread(fleet, token=token)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


def _fleet(protocol: int = 2, delay_s: float = 0.0) -> Fleet:
    fleet = Fleet.generate(hosts=3, clusters=1, protocol=protocol)
    if delay_s:
        fleet.inject(FaultSpec(FaultKind.INIT_DELAY, seconds=delay_s), list(fleet.hosts))
    return fleet


def _run(base_url: str, scenario: Callable[[httpx.AsyncClient], Any]) -> Any:
    async def main() -> Any:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, limits=limits, timeout=10) as http:
            return await scenario(http)

    return asyncio.run(main())


def _init(fence: int, activation_id: str) -> dict[str, Any]:
    return {"fence": fence, "activation_id": activation_id}


def test_twenty_concurrent_inits_on_one_host_run_exactly_one(serve: Serve) -> None:
    fleet = _fleet(delay_s=0.5)
    server = serve(fleet)

    async def scenario(http: httpx.AsyncClient) -> list[httpx.Response]:
        posts = [http.post("/agents/h-0001/init", json=_init(5, f"act-{n}")) for n in range(20)]
        return list(await asyncio.gather(*posts))

    answers = _run(server.base_url, scenario)
    accepted = [a for a in answers if a.status_code == 200]
    busy = [a.json() for a in answers if a.status_code == 409]
    assert len(accepted) == 1 and accepted[0].json() == {"ok": True}
    assert len(busy) == 19
    runner = next(c for c in fleet.inits if c.outcome == "ok")
    assert {b["error"] for b in busy} == {"busy"}
    assert {(b["activation_id"], b["fence"]) for b in busy} == {(runner.activation_id, 5)}
    assert all(b["started_at"].endswith("Z") for b in busy)
    with SimulatorClient(server.base_url) as sim:
        assert sim.overlaps()["count"] == 0
        outcomes = sorted(c["outcome"] for c in sim.inits("h-0001"))
    assert outcomes == ["busy"] * 19 + ["ok"]


def test_report_shows_the_running_init_and_a_retry_is_the_same_init(serve: Serve) -> None:
    fleet = _fleet(delay_s=0.4)
    server = serve(fleet)

    async def scenario(http: httpx.AsyncClient) -> None:
        started = await http.post("/agents/h-0001/init", json=_init(3, "a"), headers=ASYNC)
        assert (started.status_code, started.json()) == (202, {"status": "running"})
        report = (await http.get("/agents/h-0001/report")).json()
        assert report["protocol"] == 2
        assert report["init"]["activation_id"] == "a" and report["init"]["fence"] == 3
        again = await http.post("/agents/h-0001/init", json=_init(3, "a"), headers=ASYNC)
        assert again.status_code == 202
        retries = (http.post("/agents/h-0001/init", json=_init(3, "a")) for _ in range(3))
        waited = await asyncio.gather(*retries)
        assert [(w.status_code, w.json()) for w in waited] == [(200, {"ok": True})] * 3
        assert (await http.get("/agents/h-0001/report")).json()["init"] is None
        after = await http.post("/agents/h-0001/init", json=_init(3, "a"), headers=ASYNC)
        assert (after.status_code, after.json()) == (200, {"ok": True})

    _run(server.base_url, scenario)
    assert [(c.activation_id, c.outcome) for c in fleet.inits] == [("a", "ok")]


def test_status_route_follows_an_init_from_running_to_done(serve: Serve) -> None:
    fleet = _fleet(delay_s=0.3)
    fleet.inject(FaultSpec(FaultKind.INIT_FAIL, reason="general", detail="vdsm broke"), ["h-0002"])
    server = serve(fleet)

    async def scenario(http: httpx.AsyncClient) -> None:
        assert (await http.get("/agents/h-0002/init/nope")).status_code == 404
        await http.post("/agents/h-0002/init", json=_init(1, "b"), headers=ASYNC)
        running = (await http.get("/agents/h-0002/init/b")).json()
        assert running["status"] == "running" and running["ended_at"] is None and running["ok"] is None
        assert (running["activation_id"], running["fence"]) == ("b", 1)
        await asyncio.sleep(0.5)
        done = (await http.get("/agents/h-0002/init/b")).json()
        assert done["status"] == "done" and done["ok"] is False
        assert (done["reason"], done["detail"]) == ("general", "vdsm broke")
        assert done["started_at"] < done["ended_at"]

    _run(server.base_url, scenario)


def test_init_goes_on_after_its_caller_gives_up_and_the_next_one_is_busy(serve: Serve) -> None:
    fleet = _fleet(delay_s=0.6)
    server = serve(fleet)

    async def scenario(http: httpx.AsyncClient) -> None:
        with pytest.raises(httpx.ReadTimeout):
            await http.post("/agents/h-0001/init", json=_init(1, "gone"), timeout=0.2)
        busy = await http.post("/agents/h-0001/init", json=_init(2, "next"))
        assert (busy.status_code, busy.json()["error"], busy.json()["activation_id"]) == (409, "busy", "gone")
        await asyncio.sleep(0.6)
        assert (await http.get("/agents/h-0001/init/gone")).json()["ok"] is True
        assert (await http.post("/agents/h-0001/init", json=_init(2, "next"))).json() == {"ok": True}

    _run(server.base_url, scenario)
    assert [(c.activation_id, c.outcome) for c in fleet.inits] == [
        ("gone", "ok"),
        ("next", "busy"),
        ("next", "ok"),
    ]
    assert fleet.overlaps() == {}


def test_fence_route_raises_and_never_lowers(serve: Serve) -> None:
    server = serve(_fleet())

    async def scenario(http: httpx.AsyncClient) -> None:
        assert (await http.post("/agents/h-0001/fence", json={"fence": 10})).json() == {"highest": 10}
        assert (await http.post("/agents/h-0001/fence", json={"fence": 3})).json() == {"highest": 10}
        stale = await http.post("/agents/h-0001/init", json=_init(9, "x"))
        assert (stale.status_code, stale.json()) == (409, {"error": "stale_fence", "highest": 10})
        assert (await http.post("/agents/h-0001/init", json=_init(10, "y"))).json() == {"ok": True}
        assert (await http.post("/agents/h-0002/fence", json={"fence": -1})).status_code == 422
        assert (await http.post("/agents/h-0002/init", json=_init(1, "z"))).json() == {"ok": True}

    _run(server.base_url, scenario)


def test_every_agent_route_needs_the_token_and_control_routes_do_not(serve: Serve) -> None:
    server = serve(_fleet())
    routes = [
        ("GET", "/agents/h-0001/report", None),
        ("POST", "/agents/h-0001/init", _init(1, "a")),
        ("GET", "/agents/h-0001/init/a", None),
        ("POST", "/agents/h-0001/fence", {"fence": 99}),
        ("POST", "/agents/h-0001/storage-domains/sd-c-1-1/connect", _init(1, "a")),
        ("GET", "/agents/h-0001/storage-domains/sd-c-1-1/connect/a", None),
        ("GET", "/agents/h-9999/report", None),
        ("POST", "/agents/h-0001/init", {"fence": "bad"}),
    ]
    with httpx.Client(base_url=server.base_url) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            for method, path, body in routes:
                answer = http.request(method, path, json=body, headers=headers)
                assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"}), path
        assert http.get("/agents/h-0001/report", headers=AUTH).status_code == 200
        assert http.get("/control/fleet").status_code == 200
    assert fleet_untouched(server)


def fleet_untouched(server: RunningSimulator) -> bool:
    """True when no init or connect reached the simulator and no fence was raised."""
    with SimulatorClient(server.base_url) as sim:
        return sim.inits() == [] and sim.connects() == []


def test_storage_domain_connect_has_busy_idempotence_and_status(serve: Serve) -> None:
    fleet = _fleet(delay_s=0.3)
    server = serve(fleet)
    url = "/agents/h-0001/storage-domains/sd-c-1-1/connect"

    async def scenario(http: httpx.AsyncClient) -> None:
        first = await http.post(url, json=_init(2, "sd-act"), headers=ASYNC)
        assert first.status_code == 202
        busy = await http.post(url, json=_init(3, "other"))
        assert (busy.status_code, busy.json()["error"]) == (409, "busy")
        other_domain = "/agents/h-0001/storage-domains/sd-c-1-2/connect"
        assert (await http.post(other_domain, json=_init(3, "other"))).json() == {"ok": True}
        assert (await http.post(url, json=_init(2, "sd-act"))).json() == {"ok": True}
        status = (await http.get(f"{url}/sd-act")).json()
        assert (status["status"], status["ok"], status["fence"]) == ("done", True, 2)
        assert (await http.get(f"{url}/other")).status_code == 404

    _run(server.base_url, scenario)
    assert [(c.sd_id, c.activation_id, c.outcome) for c in fleet.connects] == [
        ("sd-c-1-1", "sd-act", "ok"),
        ("sd-c-1-1", "other", "busy"),
        ("sd-c-1-2", "other", "ok"),
    ]


def test_v1_agent_has_no_v2_routes_runs_what_it_is_sent_and_overlaps_are_recorded(serve: Serve) -> None:
    fleet = _fleet(protocol=1, delay_s=0.3)
    server = serve(fleet, token=None)

    async def scenario(http: httpx.AsyncClient) -> None:
        report = (await http.get("/agents/h-0001/report")).json()
        assert "protocol" not in report and "init" not in report
        assert (await http.post("/agents/h-0001/fence", json={"fence": 5})).status_code == 404
        answers = await asyncio.gather(
            http.post("/agents/h-0001/init", json=_init(1, "a"), headers={"Prefer": "respond-async"}),
            http.post("/agents/h-0001/init", json=_init(2, "b")),
        )
        assert [(a.status_code, a.json()) for a in answers] == [(200, {"ok": True})] * 2
        assert (await http.get("/agents/h-0001/init/a")).status_code == 404
        again = await http.post("/agents/h-0001/init", json=_init(2, "b"))
        assert again.json() == {"ok": True}

    _run(server.base_url, scenario)
    with SimulatorClient(server.base_url) as sim:
        found = sim.overlaps()
        assert found["count"] == 1
        assert [c["activation_id"] for c in sim.inits("h-0001")] == ["a", "b", "b"]
        assert sim.set_protocol(2, hosts=["h-0001"])["hosts"] == ["h-0001"]
        assert sim.fleet()["hosts"][0]["protocol"] == 2


def test_stopping_the_server_ends_a_hung_init_as_cancelled(serve: Serve) -> None:
    fleet = _fleet(delay_s=3600)
    server = serve(fleet)
    with httpx.Client(base_url=server.base_url, headers=ASYNC) as http:
        assert http.post("/agents/h-0001/init", json=_init(1, "hung")).status_code == 202
    server.stop()
    assert [(c.outcome, c.reason) for c in fleet.inits] == [("failed", "cancelled")]


def test_a_hung_init_runs_until_cleared_and_the_agent_holds_the_host_meanwhile(serve: Serve) -> None:
    fleet = _fleet()
    fleet.inject(FaultSpec(FaultKind.INIT_HANG), ["h-0001"])
    server = serve(fleet)
    with httpx.Client(base_url=server.base_url, headers=AUTH) as http:
        with pytest.raises(httpx.ReadTimeout):  # a blocking caller gives up
            http.post("/agents/h-0001/init", json=_init(1, "hung"), timeout=0.5)
        assert http.get("/agents/h-0001/init/hung").json()["status"] == "running"
        assert http.get("/agents/h-0001/report").json()["init"]["activation_id"] == "hung"
        busy = http.post("/agents/h-0001/init", json=_init(2, "next"), headers=ASYNC)
        assert (busy.status_code, busy.json()["error"]) == (409, "busy")
        assert http.post("/agents/h-0002/init", json=_init(1, "fine")).json() == {"ok": True}
        with SimulatorClient(server.base_url) as sim:
            assert sim.fleet()["hosts"][0]["faults"] == {"init_hang": True}
            sim.clear(hosts=["h-0001"], fault="init_hang")
        deadline = time.monotonic() + 5
        while http.get("/agents/h-0001/init/hung").json()["status"] == "running":
            assert time.monotonic() < deadline, "the hung init did not end once cleared"
            time.sleep(0.05)
        assert http.get("/agents/h-0001/init/hung").json()["ok"] is True
    assert [(c.activation_id, c.outcome) for c in fleet.inits if c.host_id == "h-0001"] == [
        ("hung", "ok"),
        ("next", "busy"),
    ]


def test_a_v2_host_takes_only_bounded_fences_and_a_v1_host_still_takes_0(serve: Serve) -> None:
    fleet = _fleet()
    fleet.set_protocol(["h-0003"], 1)
    server = serve(fleet)
    sd = "/storage-domains/sd-c-1-1/connect"

    async def scenario(http: httpx.AsyncClient) -> None:
        for fence in (0, 2**63):  # Appendix B: 1 … 2^63-1, anything else is a 422
            for path, body in (
                ("/fence", {"fence": fence}),
                ("/init", _init(fence, "a")),
                (sd, _init(fence, "a")),
            ):
                answer = await http.post(f"/agents/h-0001{path}", json=body)
                assert answer.status_code == 422, (path, fence, answer.text)
        assert (await http.post("/agents/h-0001/fence", json={"fence": 2**63 - 1})).json() == {
            "highest": 2**63 - 1
        }
        assert (await http.post("/agents/h-0003/init", json=_init(0, "v1"))).json() == {
            "ok": True
        }  # as v1 did

    _run(server.base_url, scenario)
    assert [c.host_id for c in fleet.calls.inits] == ["h-0003"]


def test_a_v2_report_carries_its_agent_state_and_highest_fence(serve: Serve) -> None:
    fleet = _fleet()
    fleet.set_protocol(["h-0003"], 1)
    server = serve(fleet)

    async def scenario(http: httpx.AsyncClient) -> list[dict[str, Any]]:
        first = (await http.get("/agents/h-0001/report")).json()
        await http.post("/agents/h-0001/init", json=_init(7, "a-7"))
        second = (await http.get("/agents/h-0001/report")).json()
        other = (await http.get("/agents/h-0002/report")).json()
        v1 = (await http.get("/agents/h-0003/report")).json()
        return [first, second, other, v1]

    first, second, other, v1 = _run(server.base_url, scenario)
    assert first["agent"]["highest_fence"] == 0 and second["agent"]["highest_fence"] == 7
    assert first["agent"]["state_id"] == second["agent"]["state_id"] != other["agent"]["state_id"]
    assert "agent" not in v1
    # The product reads it as it reads the real agent's.
    report = decode_report(json.dumps(second).encode(), "h-0001", now=datetime.now(UTC))
    assert report.agent is not None and report.agent.highest_fence == 7
