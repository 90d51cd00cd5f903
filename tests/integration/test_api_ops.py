"""The HTTP API over a real socket: reports, listing, deletion, metrics and readiness."""

from __future__ import annotations

import json
from typing import Any

import pytest

from autorecovery.adapters import keys
from tests.integration.api_fixtures import ApiServer, audit, free_port, good_report, make_tokens, start_api

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)  # the ``api`` and ``fleet`` fixtures


def test_good_pushed_report_is_stored_and_shown(api: ApiServer, fleet: Any) -> None:
    with api.client("alice") as http:
        answer = http.post("/api/v1/hosts/h-0001/report", json=good_report("h-0001", extra="ignored"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] is True
        host = http.get("/api/v1/hosts/h-0001").json()
    assert host["report"]["source"] == "push"
    assert host["problems"] == []
    assert host["why_not_recovered"]["code"] == "activate"


def test_list_hosts_filters_and_pages(api: ApiServer, fleet: Any) -> None:
    with api.client("alice") as http:
        assert http.put("/api/v1/hosts/h-0002/autorecovery", json={"enabled": False}).status_code == 200
        page = http.get("/api/v1/hosts", params={"limit": 2}).json()
        assert [h["id"] for h in page["hosts"]] == ["h-0001", "h-0002"]
        rest = http.get("/api/v1/hosts", params={"limit": 2, "after": page["next_after"]}).json()
        assert ([h["id"] for h in rest["hosts"]], rest["next_after"]) == (["h-0003"], None)
        off = http.get("/api/v1/hosts", params={"autorecovery": "false"}).json()["hosts"]
        assert [h["id"] for h in off] == ["h-0002"]
        assert http.get("/api/v1/hosts", params={"status": "up"}).json()["hosts"] == []
        assert len(http.get("/api/v1/hosts", params={"cluster": "c-1"}).json()["hosts"]) == 3
        entries = http.get(
            "/api/v1/audit", params={"object_type": "host", "object_id": "h-0002", "actor": "alice"}
        ).json()["entries"]
    assert [e["event"] for e in entries] == ["autorecovery_disabled"]


def test_delete_is_refused_while_an_activation_is_in_flight(api: ApiServer, fleet: Any, deps: Any) -> None:
    with api.client("alice") as http:
        queued = http.post("/api/v1/hosts/h-0001/activate")
        assert queued.status_code == 202, queued.text
        refused = http.delete("/api/v1/hosts/h-0001")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "activation_in_flight"
        assert refused.json()["holder"]["id"] == queued.json()["activation_id"]
        with deps.db.transaction() as conn:  # the activation ends (no worker in this test)
            conn.execute("UPDATE activations SET state = 'failed', outcome = 'failed'")
        assert http.delete("/api/v1/hosts/h-0001").status_code == 204
        assert http.get("/api/v1/hosts/h-0001").status_code == 404
    assert [e["actor"] for e in audit(deps, event="host_deleted")] == ["alice"]


def test_metrics_are_computed_from_the_store_and_redis(api: ApiServer, fleet: Any, deps: Any) -> None:
    deps.redis.set(keys.last_tick(), json.dumps({"duration_s": 0.25, "finished_at": 1.7e9, "hosts": 3}))
    with api.client("alice") as http:
        http.post("/api/v1/hosts/h-0001/activate")
    with deps.db.transaction() as conn:
        conn.execute("UPDATE activations SET state = 'skipped', outcome = 'lock_busy'")
    with api.client("vic") as http:
        text = http.get("/metrics").text
    assert 'autorecovery_hosts{cluster="c-1",status="unassigned"} 3.0' in text
    assert 'autorecovery_hosts{cluster="c-1",status="up"} 0.0' in text
    # Counters live on across tests (they never go down): the session's other tests may add.
    assert 'autorecovery_activations_total{outcome="lock_busy",trigger="manual"}' in text
    assert "autorecovery_lock_skips_total " in text
    assert "autorecovery_tick_duration_seconds 0.25" in text
    assert 'autorecovery_metrics_source_up{source="postgresql"} 1.0' in text


def test_readyz_names_an_unreachable_broker_and_activation_answers_503(
    servers: Any, logs: Any, fleet: Any, deps: Any
) -> None:
    server = start_api(
        servers,
        logs,
        make_tokens(),
        name="api-dead-broker",
        AUTORECOVERY_BROKER_URL=f"redis://127.0.0.1:{free_port()}/0",
    )
    try:
        with server.client("vic") as http:
            ready = http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["broker"]
        assert ready.json()["checks"]["postgresql"] == "ok"
        with server.client("alice") as http:
            answer = http.post("/api/v1/hosts/h-0001/activate")
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "broker_unavailable"
        with deps.db.transaction() as conn:
            row = conn.execute("SELECT state, outcome FROM activations").fetchone()
        assert (row["state"], row["outcome"]) == ("failed", "not_enqueued")
    finally:
        server.stop()
