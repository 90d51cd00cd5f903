"""Manual activation through the HTTP API with a real worker, the simulator and racing ticks."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pytest

from tests.integration.api_fixtures import ApiServer, audit
from tests.integration.conftest import host_status, send_ticks, settle

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)  # the ``api`` fixture

HOST = "h-0001"
RACERS = 20


def _take_out(client: Any, tick: Any, deps: Any) -> None:
    """Bring the fleet up, then put HOST non_operational with its fault already cleared."""
    tick()
    settle(deps)
    client.inject("kvm_down", hosts=[HOST])
    tick()
    assert host_status(deps, HOST)["status"] == "non_operational"
    client.clear(hosts=[HOST])
    client.reset_record()


def _intervals_do_not_overlap(calls: list[dict[str, Any]]) -> bool:
    spans = sorted(
        (datetime.fromisoformat(c["started_at"]), datetime.fromisoformat(c["ended_at"]))
        for c in calls
        if c["outcome"] != "stale_fence"
    )
    return all(end <= nxt for (_, end), (nxt, _) in zip(spans, spans[1:], strict=False))


def test_racing_manual_activations_and_ticks_activate_once(
    api: ApiServer, sim: Any, worker: Any, tick: Any, deps: Any, app_module: Any
) -> None:
    client = sim(hosts=3)
    _take_out(client, tick, deps)
    client.inject("init_delay", hosts=[HOST], seconds=1.0)  # the winner holds the host a while
    with deps.db.transaction() as conn:
        before = [r["id"] for r in conn.execute("SELECT id FROM activations").fetchall()]

    start = threading.Barrier(RACERS + 1)

    def manual(i: int) -> Any:
        who = "alice" if i % 2 else "bob"
        with api.client(who) as http:
            start.wait()
            # The stored report still shows the fault just cleared: admins who know force.
            return who, http.post(f"/api/v1/hosts/{HOST}/activate", params={"force": "true"})

    def ticks() -> None:
        start.wait()
        send_ticks(app_module, deps, copies=3)  # duplicate beats, racing the admins

    with ThreadPoolExecutor(RACERS + 1) as pool:
        ticking = pool.submit(ticks)
        answers = list(pool.map(manual, range(RACERS)))
        ticking.result()
    settle(deps)
    tick()
    settle(deps)

    codes = Counter(a.status_code for _, a in answers)
    assert codes[202] <= 1 and codes[202] + codes[409] == RACERS, codes
    assert host_status(deps, HOST)["status"] == "up"
    calls = client.inits(HOST)
    assert [c["outcome"] for c in calls] == ["ok"], calls
    assert client.overlaps()["count"] == 0
    assert _intervals_do_not_overlap(calls)

    # The audit log tells each story: one activation ran, every refusal names its asker.
    with deps.db.transaction() as conn:
        ran = conn.execute(
            "SELECT * FROM activations WHERE host_id = %s AND NOT id = ANY(%s)", (HOST, before)
        ).fetchall()
    assert [(r["state"], r["id"]) for r in ran] == [("done", calls[0]["activation_id"])]
    winner = ran[0]
    for event in ("activation_queued", "activation_started", "activation_succeeded"):
        [entry] = [
            e
            for e in audit(deps, object_id=HOST, event=event)
            if e["details"]["activation_id"] == winner["id"]
        ]
        assert entry["actor"] == winner["actor"]
    refused = audit(deps, object_id=HOST, event="activation_refused")
    assert Counter(e["actor"] for e in refused) == Counter(who for who, a in answers if a.status_code == 409)
    for who, answer in answers:
        body = answer.json()
        if answer.status_code == 202:
            assert who == winner["actor"] and body["task_id"] == winner["id"] == body["activation_id"]
        elif body["error"] == "activation_in_flight":
            assert body["holder"]["id"] == winner["id"]
            assert body["holder"]["actor"] == winner["actor"]
        else:
            assert body["error"] == "already_up", body
    for entry in refused:
        if entry["reason"] == "activation_in_flight":
            assert entry["details"]["holder_id"] == winner["id"]


def test_autorecovery_off_only_a_manual_activation_brings_the_host_back(
    api: ApiServer, sim: Any, worker: Any, tick: Any, deps: Any
) -> None:
    client = sim(hosts=2)
    with api.client("alice") as http:
        tick()
        settle(deps)
        off = http.put(f"/api/v1/hosts/{HOST}/autorecovery", json={"enabled": False})
        assert off.status_code == 200, off.text
        _take_out(client, tick, deps)
        for _ in range(3):
            tick()
            settle(deps)
        row = host_status(deps, HOST)
        assert (row["status"], row["last_decision"]) == ("non_operational", "autorecovery_off")
        assert client.inits(HOST) == []
        shown = http.get(f"/api/v1/hosts/{HOST}").json()
        assert shown["autorecovery"] is False
        assert shown["why_not_recovered"]["code"] == "autorecovery_off"
        planned = {p["host_id"]: p for p in http.get("/api/v1/plan").json()["hosts"]}
        assert (planned[HOST]["action"], planned[HOST]["code"]) == ("skip", "autorecovery_off")

        done = http.post(f"/api/v1/hosts/{HOST}/activate", params={"wait_s": 20})
        assert done.status_code == 200, done.text
        assert (done.json()["state"], done.json()["outcome"]) == ("done", "up")
        assert host_status(deps, HOST)["status"] == "up"
        assert http.get(f"/api/v1/hosts/{HOST}").json()["autorecovery"] is False
        again = http.post(f"/api/v1/hosts/{HOST}/activate")
        assert (again.status_code, again.json()["error"]) == (409, "already_up")
    assert [c["outcome"] for c in client.inits(HOST)] == ["ok"]
    [flag] = audit(deps, object_id=HOST, event="autorecovery_disabled")
    assert flag["actor"] == "alice"
    succeeded = audit(deps, object_id=HOST, event="activation_succeeded")
    assert [e["actor"] for e in succeeded] == ["auto", "alice"]  # the fleet's first start, then hers


def test_failed_manual_activation_leaves_the_host_inactive_with_the_agents_reason(
    api: ApiServer, sim: Any, worker: Any, tick: Any, deps: Any
) -> None:
    client = sim(hosts=2)
    with api.client("bob") as http:
        tick()
        settle(deps)
        assert http.put(f"/api/v1/hosts/{HOST}/autorecovery", json={"enabled": False}).status_code == 200
        _take_out(client, tick, deps)
        tick()  # a clean report again: the admin's activation needs no force
        settle(deps)
        client.inject("init_fail", hosts=[HOST], reason="network_unreachable", detail="bond0 has no carrier")
        done = http.post(f"/api/v1/hosts/{HOST}/activate", params={"wait_s": 20})
        assert done.status_code == 200, done.text
        assert (done.json()["state"], done.json()["reason"]) == ("failed", "network_unreachable")
        for _ in range(2):
            tick()
            settle(deps)
        shown = http.get(f"/api/v1/hosts/{HOST}").json()
    assert (shown["status"], shown["reason"]) == ("non_operational", "network_unreachable")
    assert shown["detail"] == "bond0 has no carrier"
    assert shown["autorecovery"] is False
    assert shown["recent_activations"][0]["actor"] == "bob"
    assert [c["outcome"] for c in client.inits(HOST)] == ["failed"], "ticks never retried it"
    [failed] = audit(deps, object_id=HOST, event="activation_failed")
    assert (failed["actor"], failed["reason"]) == ("bob", "failed")


def test_activation_of_an_unknown_host_is_404_and_wait_returns_202_while_running(
    api: ApiServer, sim: Any, worker: Any, tick: Any, deps: Any
) -> None:
    client = sim(hosts=1)
    _take_out(client, tick, deps)
    client.inject("init_delay", hosts=[HOST], seconds=2.0)
    with api.client("alice") as http:
        missing = http.post("/api/v1/hosts/h-9999/activate")
        assert (missing.status_code, missing.json()["field"]) == (404, "host_id")
        running = http.post(f"/api/v1/hosts/{HOST}/activate", params={"wait_s": 0.5, "force": "true"})
        assert running.status_code == 202, running.text
        assert running.json()["state"] in ("queued", "sending", "sent")
        settle(deps)
        assert http.get(f"/api/v1/hosts/{HOST}").json()["status"] == "up"
