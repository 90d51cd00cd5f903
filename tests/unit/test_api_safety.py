"""Pauses, holds, the safety state and the gate in /plan, /readyz and /metrics, over ASGI.

The app runs on the in-memory store (no servers); ``tests/integration/test_api_safety.py`` runs
the same routes over HTTP against PostgreSQL.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from api.metrics import FleetCollector, gate_code
from api.schemas import MAX_PAUSE_S, PauseIn, parse_rfc3339
from autorecovery.services.fleet import HostSpec
from tests.unit.test_api_errors import ADMIN, VIEWER, World, shape


@pytest.fixture
def world() -> World:
    return World()


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        PauseIn.model_validate(data)
    return ".".join(str(p) for p in caught.value.errors()[0]["loc"])


# -- Schema ----------------------------------------------------------------------------------


def test_pause_in_takes_a_reason_and_at_most_one_expiry() -> None:
    assert PauseIn.model_validate({"reason": "migration"}).expires_at is None
    assert PauseIn.model_validate({"reason": "x", "duration_s": 60}).duration_s == 60.0
    at = PauseIn.model_validate({"reason": "x", "expires_at": "2030-01-01T02:00:00+02:00"}).expires_at
    assert at == datetime(2030, 1, 1, tzinfo=UTC) and at.tzinfo is UTC
    both = {"reason": "x", "expires_at": "2030-01-01T00:00:00Z", "duration_s": 60}
    assert refused(both) == "duration_s"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reason": ""}, "reason"),
        ({"reason": "x" * 501}, "reason"),
        ({"reason": "a\nb"}, "reason"),
        ({"reason": 5}, "reason"),
        ({"reason": None}, "reason"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": -5}, "duration_s"),
        ({"duration_s": math.nan}, "duration_s"),
        ({"duration_s": math.inf}, "duration_s"),
        ({"duration_s": MAX_PAUSE_S + 1}, "duration_s"),
        ({"duration_s": "60"}, "duration_s"),
        ({"duration_s": True}, "duration_s"),
        ({"expires_at": "2030-01-01T00:00:00"}, "expires_at"),
        ({"expires_at": "2030-01-01"}, "expires_at"),
        ({"expires_at": "tomorrow"}, "expires_at"),
        ({"expires_at": 1_900_000_000}, "expires_at"),
        ({"expires_at": "2030-02-30T00:00:00Z"}, "expires_at"),
        ({"expires_at": "0001-01-01T00:00:00+01:00"}, "expires_at"),
        ({"owner": "mallory"}, "owner"),
    ],
)
def test_pause_in_refuses(changes: dict[str, Any], field: str) -> None:
    assert refused({"reason": "migration", **changes}) == field


def test_rfc3339_forms() -> None:
    assert parse_rfc3339("2030-01-01t00:00:00z") == datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_rfc3339("2030-01-01 00:00:00.123456789Z").microsecond == 123456
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_rfc3339("2030-01-01T00:00Z")


# -- Routes ----------------------------------------------------------------------------------


def test_pause_with_a_duration_shows_in_safety_plan_and_readyz(world: World) -> None:
    world.fleet.receive_report("h-1", _report("h-1"), "test")  # recoverable: a clean report
    before = datetime.now(UTC)
    answer = world.call(
        "PUT", "/api/v1/pause", json={"reason": "storage work", "duration_s": 600}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    pause = answer.json()
    assert (pause["scope"], pause["owner"], pause["reason"]) == ("fleet", "alice", "storage work")
    expires = datetime.fromisoformat(pause["expires_at"])
    assert before + timedelta(seconds=599) < expires < datetime.now(UTC) + timedelta(seconds=601)
    assert world.events()[0] == ("paused", "alice", "storage work")

    assert world.call("GET", "/api/v1/pause", headers=VIEWER).json() == {"pauses": [pause]}
    state = world.call("GET", "/api/v1/safety", headers=VIEWER).json()
    assert state["pauses"] == [pause] and state["gate"] is None and state["incidents"] == []
    plan = world.call("GET", "/api/v1/plan", headers=VIEWER).json()
    assert (plan["gate"], plan["pauses"]) == (None, [pause])
    assert [(h["host_id"], h["action"], h["code"]) for h in plan["hosts"]] == [("h-1", "skip", "paused")]
    host = world.call("GET", "/api/v1/hosts/h-1", headers=VIEWER).json()
    assert host["holds"]["pause"] == pause
    ready = world.call("GET", "/readyz", headers=VIEWER).json()
    assert ready["automatic_activation"] == {"gated": False, "reason": None, "paused": ["fleet"]}

    lifted = world.call("DELETE", "/api/v1/pause", headers=ADMIN)
    assert lifted.status_code == 200 and lifted.json() == pause
    assert world.events()[0] == ("resumed", "alice", "storage work")
    assert shape(world.call("DELETE", "/api/v1/pause", headers=ADMIN)) == (404, "not_paused", None)
    plan = world.call("GET", "/api/v1/plan", headers=VIEWER).json()
    assert plan["pauses"] == [] and plan["hosts"][0]["action"] == "activate"


def test_cluster_pause_and_refusals_write_nothing(world: World) -> None:
    events = world.events()
    in_past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    for method, path, body, expected in [
        ("PUT", "/api/v1/clusters/c-9/pause", {"reason": "x"}, (404, "not_found", "cluster_id")),
        ("DELETE", "/api/v1/clusters/c-9/pause", None, (404, "not_found", "cluster_id")),
        ("PUT", "/api/v1/clusters/fleet/pause", {"reason": "x"}, (422, "invalid_input", "cluster_id")),
        ("DELETE", "/api/v1/clusters/fleet/pause", None, (422, "invalid_input", "cluster_id")),
        (
            "PUT",
            "/api/v1/clusters/c-1/pause",
            {"reason": "x", "expires_at": in_past},
            (422, "invalid_input", "expires_at"),
        ),
        ("PUT", "/api/v1/pause", {"reason": "x", "duration_s": -1}, (422, "invalid_input", "duration_s")),
        ("PUT", "/api/v1/pause", {}, (422, "invalid_input", "reason")),
        ("PUT", "/api/v1/pause", None, (422, "invalid_input", "body")),
        ("DELETE", "/api/v1/clusters/c-1/pause", None, (404, "not_paused", None)),
    ]:
        answer = world.call(method, path, json=body, headers=ADMIN)
        assert shape(answer) == expected, (method, path, answer.text)
    assert world.events() == events and world.db.state.pauses == {}

    answer = world.call("PUT", "/api/v1/clusters/c-1/pause", json={"reason": "rack"}, headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["expires_at"] is None
    assert world.call("GET", "/readyz", headers=VIEWER).json()["automatic_activation"]["paused"] == ["c-1"]
    assert world.call("DELETE", "/api/v1/clusters/c-1/pause", headers=ADMIN).json()["scope"] == "c-1"


def test_writes_need_an_admin(world: World) -> None:
    for method, path in [
        ("PUT", "/api/v1/pause"),
        ("DELETE", "/api/v1/pause"),
        ("PUT", "/api/v1/clusters/c-1/pause"),
        ("DELETE", "/api/v1/clusters/c-1/pause"),
        ("POST", "/api/v1/hosts/h-1/quarantine/clear"),
        ("POST", "/api/v1/hosts/h-1/backoff/reset"),
    ]:
        body = {"reason": "x"} if method == "PUT" else None
        assert shape(world.call(method, path, json=body))[:2] == (401, "unauthorized"), path
        assert shape(world.call(method, path, json=body, headers=VIEWER))[:2] == (403, "forbidden"), path
    for path in ("/api/v1/pause", "/api/v1/safety"):
        assert world.call("GET", path).status_code == 401
        assert world.call("GET", path, headers=VIEWER).status_code == 200
    assert world.db.state.pauses == {}


def test_clearing_holds_answers_what_they_were(world: World) -> None:
    since = datetime(2026, 11, 24, 12, tzinfo=UTC)
    world.db.state.hosts["h-1"].update(
        failures=5, next_attempt_at=since, quarantined_at=since, quarantine_reason="flapping"
    )
    host = world.call("GET", "/api/v1/hosts/h-1", headers=VIEWER).json()
    assert host["holds"]["quarantine_reason"] == "flapping" and host["holds"]["failures"] == 5

    reset = world.call("POST", "/api/v1/hosts/h-1/backoff/reset", headers=ADMIN)
    assert reset.status_code == 200, reset.text
    assert reset.json()["cleared"] == "backoff" and reset.json()["previous"]["failures"] == 5
    row = world.db.state.hosts["h-1"]
    assert (row["failures"], row["next_attempt_at"], row["quarantined_at"]) == (0, None, since)

    cleared = world.call("POST", "/api/v1/hosts/h-1/quarantine/clear", headers=ADMIN).json()
    assert cleared["cleared"] == "quarantine_and_backoff"
    assert cleared["previous"]["quarantine_reason"] == "flapping"
    assert world.db.state.hosts["h-1"]["quarantined_at"] is None
    assert [e for e in world.events()[:2]] == [
        ("quarantine_cleared", "alice", "admin"),
        ("backoff_reset", "alice", "admin"),
    ]
    assert shape(world.call("POST", "/api/v1/hosts/h-9/backoff/reset", headers=ADMIN)) == (
        404,
        "not_found",
        "host_id",
    )


def test_readyz_reports_a_gate_and_keeps_its_status(world: World) -> None:
    world.db.state.observer["gate"] = "monitoring_stale: 9 of 10 hosts have no fresh data"
    answer = world.call("GET", "/readyz", headers=VIEWER)
    assert answer.status_code == 200
    assert answer.json()["automatic_activation"] == {
        "gated": True,
        "reason": "monitoring_stale: 9 of 10 hosts have no fresh data",
        "paused": [],
    }
    assert world.call("GET", "/api/v1/plan", headers=VIEWER).json()["gate"].startswith("monitoring_stale")
    world.db.unavailable = True
    gate = world.call("GET", "/readyz", headers=VIEWER).json()["automatic_activation"]
    assert gate == {"gated": True, "reason": gate["reason"], "paused": None}
    assert gate["reason"].startswith("postgresql_unavailable:")


# -- Metrics ---------------------------------------------------------------------------------


def _scrape(safety: dict[str, Any]) -> str:
    counts: dict[str, Any] = {"hosts": [], "counters": [], "histograms": {}}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(lambda: counts, lambda: None, lambda: safety))
    return generate_latest(registry).decode()


def test_safety_gauges() -> None:
    text = _scrape(
        {
            "gate": "quiet_period: waiting for a full tick",
            "silent_hosts": 3,
            "observed_hosts": 10,
            "last_full_tick_at": datetime(2026, 1, 1, tzinfo=UTC),
            "pauses": ["c-2"],
            "quarantined": 2,
            "in_backoff": 1,
            "capped": 4,
            "incidents_open": 1,
            "in_flight": {"c-1": 0, "c-2": 3},
        }
    )
    for line in [
        'autorecovery_observer_gated{reason="quiet_period"} 1.0',
        "autorecovery_observer_silent_hosts 3.0",
        "autorecovery_observer_observed_hosts 10.0",
        "autorecovery_observer_last_full_tick_timestamp_seconds 1.7672256e+09",
        'autorecovery_pauses{scope="c-2"} 1.0',
        'autorecovery_pauses{scope="fleet"} 0.0',
        "autorecovery_hosts_quarantined 2.0",
        "autorecovery_hosts_in_backoff 1.0",
        "autorecovery_hosts_capped 4.0",
        "autorecovery_incidents_open 1.0",
        'autorecovery_activations_in_flight{cluster="c-1"} 0.0',
        'autorecovery_activations_in_flight{cluster="c-2"} 3.0',
    ]:
        assert line in text, line
    quiet = _scrape({"gate": None, "pauses": [], "in_flight": {}})
    assert 'autorecovery_observer_gated{reason=""} 0.0' in quiet
    assert "autorecovery_hosts_quarantined 0.0" in quiet


@pytest.mark.parametrize(
    ("gate", "code"),
    [(None, ""), ("", ""), ("redis_unavailable: no answer", "redis_unavailable"), ("odd", "odd")],
)
def test_gate_code(gate: str | None, code: str) -> None:
    assert gate_code(gate) == code


def _report(host_id: str) -> dict[str, Any]:
    return {
        "host_id": host_id,
        "reported_at": datetime.now(UTC).isoformat(),
        "kvm": True,
        "version": "4.5",
        "cpu_flags": [],
        "networks": {"mgmt": True},
        "storage_domains": {},
        "vms_running": 0,
        "mem_free_mb": 1,
    }


def test_safety_says_each_clusters_health_and_its_cap(world: World) -> None:
    more = [HostSpec(f"h-{i}", "c-1", f"http://127.0.0.1:9/h-{i}") for i in (2, 3, 4)]
    world.fleet.register_hosts(more, "t")
    world.fleet.receive_report("h-1", _report("h-1"), "test")
    state = world.call("GET", "/api/v1/safety", headers=VIEWER).json()
    assert state["clusters"] == [{"cluster": "c-1", "hosts": 4, "up": 0, "limit": 1, "in_flight": 0}]


def test_an_unknown_cluster_filter_is_a_404_not_an_empty_list(world: World) -> None:
    for path in ("/api/v1/hosts?cluster=nope", "/api/v1/plan?cluster=nope"):
        assert shape(world.call("GET", path, headers=VIEWER)) == (404, "not_found", "cluster_id"), path
    assert world.call("GET", "/api/v1/hosts?cluster=c-1", headers=VIEWER).status_code == 200


def test_an_unknown_audit_event_filter_is_a_422_naming_it(world: World) -> None:
    refused = world.call("GET", "/api/v1/audit?event=activation_suceeded", headers=VIEWER)
    assert shape(refused) == (422, "invalid_input", "event")
    assert "autorecovery audit --events" in refused.json()["message"]
    assert world.call("GET", "/api/v1/audit?event=host_registered", headers=VIEWER).status_code == 200
