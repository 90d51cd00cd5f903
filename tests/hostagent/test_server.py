"""Agent protocol v2 over real HTTP on libvirt's test driver: init, busy, idempotence, status, auth."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.hostagent.conftest import RunningAgent, serve_agent
from tests.support.hostagent import HostTree
from tests.support.processes import wait_for

SLOW_S = 1.5


@pytest.fixture
def slow(tree: HostTree, libvirt_uri: str) -> Iterator[RunningAgent]:
    """An agent whose init takes ``SLOW_S`` seconds (the config's test hook)."""
    with serve_agent(tree.config(testing={"init_delay_s": SLOW_S})) as agent:
        yield agent


def test_report_speaks_protocol_2_with_no_init_running(running: RunningAgent) -> None:
    with running.client() as client:
        body = client.get("/report").json()
    assert body["protocol"] == 2 and body["init"] is None
    assert body["host_id"] == "h-001" and body["storage_domains"] == {"sd-1": True, "sd-2": True}


def test_init_starts_a_destroyed_pool_and_answers_ok(running: RunningAgent) -> None:
    running.conn.storagePoolLookupByName("pool-sd1").destroy()
    with running.client() as client:
        # The report answers from the last snapshot: the next look shows the stopped pool,
        # repairable (its directory is there).
        assert client.get("/report").json()["storage_domains"]["sd-1"] is True
        running.agent.looks.refresh()
        body = client.get("/report").json()
        assert body["details"]["storage_domain:sd-1"].endswith("is inactive")
        assert body["repairable"] == ["storage_domain:sd-1"]
        assert client.post("/init", json={"fence": 1, "activation_id": "a1"}).json() == {"ok": True}
        # The init's own look is the snapshot now: the report shows what the init did.
        body = client.get("/report").json()
        assert body["storage_domains"]["sd-1"] is True and body["repairable"] == []


def test_init_that_cannot_bring_a_network_up_answers_the_reason(
    tree: HostTree, running: RunningAgent
) -> None:
    tree.set_link("eth1", "down", None)
    with running.client() as client:
        answer = client.post("/init", json={"fence": 1, "activation_id": "a1"}).json()
    assert answer == {
        "ok": False,
        "reason": "network_interface_down",
        "detail": "network storage: interface eth1 is down",
    }


def test_twenty_concurrent_inits_run_exactly_one(slow: RunningAgent) -> None:
    start = threading.Barrier(20)

    def call(n: int) -> httpx.Response:
        with slow.client() as client:
            start.wait()
            return client.post("/init", json={"fence": 4, "activation_id": f"act-{n}"})

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(call, range(20)))
    done = [a for a in answers if a.status_code == 200]
    busy = [a.json() for a in answers if a.status_code == 409]
    assert len(done) == 1 and done[0].json() == {"ok": True}
    assert len(busy) == 19
    holder = {b["activation_id"] for b in busy}
    assert len(holder) == 1 and all(
        b["error"] == "busy" and b["fence"] == 4 and b["started_at"] for b in busy
    )
    ran = [n for n in range(20) if slow.agent.ops.state.lookup("init", f"act-{n}") is not None]
    assert [f"act-{n}" for n in ran] == list(holder)


def test_the_report_shows_the_running_init_and_async_then_status(slow: RunningAgent) -> None:
    with slow.client() as client:
        accepted = client.post(
            "/init", json={"fence": 2, "activation_id": "a1"}, headers={"Prefer": "respond-async"}
        )
        assert (accepted.status_code, accepted.json()) == (202, {"status": "running"})
        running = client.get("/report").json()["init"]
        assert running["activation_id"] == "a1" and running["fence"] == 2 and running["started_at"]
        status = client.get("/init/a1").json()
        assert (status["status"], status["ok"], status["ended_at"]) == ("running", None, None)
        wait_for(
            lambda: client.get("/init/a1").json()["status"] == "done", 10, "the init to end", interval_s=0.02
        )
        status = client.get("/init/a1").json()
        assert (status["ok"], status["fence"], status["activation_id"]) == (True, 2, "a1")
        assert status["started_at"] == running["started_at"] and status["ended_at"]
        assert client.get("/report").json()["init"] is None
        assert client.get("/init/never").status_code == 404


def test_a_retry_of_a_running_init_waits_for_the_same_init(slow: RunningAgent) -> None:
    with slow.client() as client:
        client.post("/init", json={"fence": 3, "activation_id": "a1"}, headers={"Prefer": "respond-async"})
        again = client.post("/init", json={"fence": 3, "activation_id": "a1"})
        assert again.json() == {"ok": True}
        other = client.post(
            "/init", json={"fence": 3, "activation_id": "a2"}, headers={"Prefer": "respond-async"}
        )
        assert other.status_code == 202  # a new init may start once the first has ended


def test_a_retry_of_an_ended_init_answers_its_result_and_runs_nothing(running: RunningAgent) -> None:
    with running.client() as client:
        assert client.post("/init", json={"fence": 5, "activation_id": "a1"}).json() == {"ok": True}
        running.conn.storagePoolLookupByName("pool-sd1").destroy()
        assert client.post("/init", json={"fence": 5, "activation_id": "a1"}).json() == {"ok": True}
        assert running.conn.storagePoolLookupByName("pool-sd1").isActive() == 0  # nothing ran again
        assert client.post("/init", json={"fence": 5, "activation_id": "a2"}).json() == {"ok": True}
        assert running.conn.storagePoolLookupByName("pool-sd1").isActive() == 1


def test_fence_raises_never_lowers_and_refuses_older_inits(running: RunningAgent) -> None:
    with running.client() as client:
        assert client.post("/fence", json={"fence": 10}).json() == {"highest": 10}
        assert client.post("/fence", json={"fence": 3}).json() == {"highest": 10}
        stale = client.post("/init", json={"fence": 9, "activation_id": "a1"})
        assert (stale.status_code, stale.json()) == (409, {"error": "stale_fence", "highest": 10})
        assert client.get("/init/a1").status_code == 404
        assert client.post("/init", json={"fence": 10, "activation_id": "a2"}).json() == {"ok": True}
        bad = client.post("/fence", json={"fence": "11"})
        assert bad.status_code == 422 and "fence" in bad.text


def test_connect_is_fenced_per_domain_with_its_status_route(running: RunningAgent) -> None:
    running.conn.storagePoolLookupByName("pool-sd2").destroy()
    with running.client() as client:
        url = "/storage-domains/sd-2/connect"
        assert client.post(url, json={"fence": 6, "activation_id": "c1"}).json() == {"ok": True}
        assert running.conn.storagePoolLookupByName("pool-sd2").isActive() == 1
        status = client.get(f"{url}/c1").json()
        assert (status["status"], status["ok"], status["fence"]) == ("done", True, 6)
        stale = client.post(url, json={"fence": 5, "activation_id": "c2"})
        assert stale.json() == {"error": "stale_fence", "highest": 6}
        assert client.post("/init", json={"fence": 1, "activation_id": "a1"}).json() == {"ok": True}
        assert (
            client.post("/storage-domains/sd-9/connect", json={"fence": 1, "activation_id": "c"}).status_code
            == 404
        )
        assert client.get("/storage-domains/sd-1/connect/c1").status_code == 404


@pytest.mark.parametrize("token", [None, "wrong-token", "x"])
def test_every_route_needs_the_token(running: RunningAgent, token: str | None) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=running.url, headers=headers) as client:
        for answer in (
            client.get("/report"),
            client.post("/init", json={"fence": 1, "activation_id": "a1"}),
            client.post("/fence", json={"fence": 99}),
            client.get("/init/a1"),
        ):
            assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"})
    assert running.agent.ops.state.highest() == 0


def test_bodies_over_the_cap_are_refused(running: RunningAgent) -> None:
    huge = {"fence": 1, "activation_id": "a" * 100, "pad": "x" * 70_000}
    with running.client() as client:
        assert client.post("/init", json=huge).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"fence": 1, "activation_id": "a1", "pad": "'
            for _ in range(100):
                yield b"x" * 1000
            yield b'"}'

        streamed = client.post("/init", content=chunks(), headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
    assert running.agent.ops.state.highest() == 0


def test_a_caller_that_hangs_up_never_stops_the_init(slow: RunningAgent) -> None:
    with slow.client(timeout_s=0.3) as impatient, pytest.raises(httpx.ReadTimeout):
        impatient.post("/init", json={"fence": 7, "activation_id": "a1"})
    with slow.client() as client:
        assert client.get("/init/a1").json()["status"] == "running"
        busy = client.post("/init", json={"fence": 8, "activation_id": "a2"})
        assert (busy.status_code, busy.json()["activation_id"]) == (409, "a1")
        wait_for(
            lambda: client.get("/init/a1").json()["status"] == "done", 10, "the init to end", interval_s=0.02
        )
        assert client.get("/init/a1").json()["ok"] is True


def test_a_running_connect_is_not_reported_as_an_init_but_makes_inits_busy(slow: RunningAgent) -> None:
    with slow.client() as client:
        connect = client.post(
            "/storage-domains/sd-1/connect",
            json={"fence": 1, "activation_id": "c1"},
            headers={"Prefer": "respond-async"},
        )
        assert connect.status_code == 202
        assert client.get("/report").json()["init"] is None
        busy = client.post("/init", json={"fence": 1, "activation_id": "a1"})
        assert (busy.status_code, busy.json()["error"], busy.json()["activation_id"]) == (409, "busy", "c1")
        assert client.get("/storage-domains/sd-1/connect/c1").json()["status"] == "running"


def test_the_product_reads_the_report_as_a_clean_host(running: RunningAgent) -> None:
    from datetime import UTC, datetime

    from models.assessment import assess
    from models.domain import Cluster
    from models.report import parse_report

    with running.client() as client:
        body = client.get("/report").json()
    report = parse_report(body, "h-001")
    cluster = Cluster(
        "c-1", frozenset({"ovirtmgmt", "vmnet"}), frozenset({"sd-1", "sd-2"}), "4.5", frozenset({"vmx"})
    )
    assert assess(report, cluster, datetime.now(UTC), 60).is_healthy
    running.conn.networkLookupByName("vmnet").destroy()
    running.agent.looks.refresh()
    with running.client() as client:
        problem = assess(
            parse_report(client.get("/report").json(), "h-001"), cluster, datetime.now(UTC), 60
        ).primary
    assert problem is not None and problem.subject == "vmnet"
