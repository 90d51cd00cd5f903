"""VM run reports, the placement ranking, storage domains and their metrics, over ASGI.

The app runs on the in-memory store (no servers); ``tests/integration/test_api_vmruns_storage.py``
runs the same routes over HTTP against PostgreSQL, a worker and the simulator.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import ValidationError

from api.errors import field_name
from api.metrics import FleetCollector
from api.schemas import MAX_ATTEMPTS, VmRunIn
from autorecovery.services.fleet import HostSpec
from models.domain import Cluster
from tests.unit.test_api_errors import ADMIN, VIEWER, World, shape

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture
def world() -> World:
    """Cluster c-1 with up hosts h-1..h-3 (h-1 lightly loaded), and c-2 with sd-1 and sd-2."""
    found = World()
    found.fleet.register_hosts(
        [HostSpec(f"h-{i}", "c-1", f"http://127.0.0.1:9/h-{i}") for i in (2, 3)], "test"
    )
    for host_id, vms, free_gb in (("h-1", 1, 30), ("h-2", 6, 20), ("h-3", 12, 8)):
        found.fleet.receive_report(host_id, _load(host_id, vms, free_gb), "test")
        found.db.state.hosts[host_id].update(status="up", reason=None, detail=None)
    found.fleet.register_cluster(Cluster("c-2", storage_domains=frozenset({"sd-1", "sd-2"})), "test")
    return found


def _load(host_id: str, vms: int, free_gb: int) -> dict[str, Any]:
    return {
        "host_id": host_id,
        "reported_at": datetime.now(UTC).isoformat(),
        "kvm": True,
        "version": "4.5",
        "cpu_flags": [],
        "networks": {"mgmt": True},
        "storage_domains": {},
        "vms_running": vms,
        "mem_free_mb": free_gb * 1024,
    }


def run(*attempts: str, vm_id: str = "vm-1") -> dict[str, Any]:
    """A VM run body from ``host:ok`` / ``host:failed`` strings."""
    out = []
    for spec in attempts:
        host, outcome = spec.split(":")
        ok = outcome == "ok"
        out.append({"host": host, "ok": ok, "error": None if ok else "qemu-kvm: failed"})
    return {"vm_id": vm_id, "attempts": out}


def written(world: World) -> tuple[Any, ...]:
    """What a refused report must leave alone: runs, charges, hosts and the audit log."""
    st = world.db.state
    return copy.deepcopy((st.vm_runs, st.charges, st.hosts, st.audit))


# -- Schema ----------------------------------------------------------------------------------


def refused(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        VmRunIn.model_validate(data)
    return field_name(caught.value.errors()[0]["loc"])


def test_vm_run_in_takes_ordered_attempts() -> None:
    body = VmRunIn.model_validate(run("h-1:failed", "h-2:ok"))
    assert [(a.host, a.ok, a.error) for a in body.attempts] == [
        ("h-1", False, "qemu-kvm: failed"),
        ("h-2", True, None),
    ]
    assert VmRunIn.model_validate({"vm_id": "v", "attempts": [{"host": "h-1", "ok": True}]})


ONE = {"host": "h-1", "ok": True, "error": None}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"vm_id": "vm-1", "attempts": []}, "attempts"),
        ({"vm_id": "vm-1"}, "attempts"),
        ({"vm_id": "vm-1", "attempts": ONE}, "attempts"),
        ({"vm_id": "vm-1", "attempts": [ONE] * (MAX_ATTEMPTS + 1)}, "attempts"),
        ({"attempts": [ONE]}, "vm_id"),
        ({"vm_id": 42, "attempts": [ONE]}, "vm_id"),
        ({"vm_id": "vm 1", "attempts": [ONE]}, "vm_id"),
        ({"vm_id": "vm-1", "attempts": [ONE], "cluster": "c-1"}, "cluster"),
        ({"vm_id": "vm-1", "attempts": [ONE, {**ONE, "ok": "true"}]}, "attempts[1].ok"),
        ({"vm_id": "vm-1", "attempts": [{**ONE, "ok": 1}]}, "attempts[0].ok"),
        ({"vm_id": "vm-1", "attempts": [{"host": "h-1"}]}, "attempts[0].ok"),
        ({"vm_id": "vm-1", "attempts": [{**ONE, "host": 7}]}, "attempts[0].host"),
        ({"vm_id": "vm-1", "attempts": [{**ONE, "host": "h/1"}]}, "attempts[0].host"),
        ({"vm_id": "vm-1", "attempts": [{**ONE, "error": "a\nb"}]}, "attempts[0].error"),
        ({"vm_id": "vm-1", "attempts": [{**ONE, "error": "x" * 1001}]}, "attempts[0].error"),
        ({"vm_id": "vm-1", "attempts": [{**ONE, "retries": 2}]}, "attempts[0].retries"),
        ({"vm_id": "vm-1", "attempts": ["h-1:ok"]}, "attempts[0]"),
    ],
)
def test_vm_run_in_refuses(data: dict[str, Any], field: str) -> None:
    assert refused(data) == field


# -- VM runs ---------------------------------------------------------------------------------


def test_three_charged_runs_put_a_host_in_error_and_out_of_the_ranking(world: World) -> None:
    ranking = world.call("GET", "/api/v1/clusters/c-1/placement", headers=VIEWER)
    assert ranking.status_code == 200, ranking.text
    assert [h["host_id"] for h in ranking.json()["hosts"]] == ["h-1", "h-2", "h-3"]
    assert ranking.json()["cluster"] == "c-1"

    for i in range(3):
        answer = world.call(
            "POST", "/api/v1/vm-runs", json=run("h-1:failed", "h-2:ok", vm_id=f"vm-{i}"), headers=ADMIN
        )
        assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["vm_id"], body["charged"], body["errored"]) == ("vm-2", {"h-1": 3}, ["h-1"])
    assert isinstance(body["vm_run"], int) and body["error_until"] is not None
    assert world.db.state.hosts["h-1"]["status"] == "error"
    charged = [e for e in world.views.audit_log(limit=100) if e["event"] == "charged"]
    assert len(charged) == 3 and {e["actor"] for e in charged} == {"alice"}

    hosts = world.call("GET", "/api/v1/clusters/c-1/placement", headers=VIEWER).json()["hosts"]
    assert [h["host_id"] for h in hosts] == ["h-2", "h-3"]


def test_a_charge_explains_the_lower_rank(world: World) -> None:
    answer = world.call("POST", "/api/v1/vm-runs", json=run("h-1:failed", "h-2:ok"), headers=ADMIN)
    assert answer.json()["charged"] == {"h-1": 1} and answer.json()["errored"] == []
    hosts = world.call("GET", "/api/v1/clusters/c-1/placement", headers=VIEWER).json()["hosts"]
    assert [h["host_id"] for h in hosts] == ["h-2", "h-1", "h-3"]
    light = hosts[1]
    assert light["recent_charges"] == 1 and light["terms"]["recent_charges"] == -20.0
    assert light["score"] == pytest.approx(sum(light["terms"].values()), abs=0.01)
    assert (light["vms_running"], light["mem_free_mb"]) == (1, 30 * 1024)


def test_a_run_that_charges_nobody_is_stored(world: World) -> None:
    answer = world.call("POST", "/api/v1/vm-runs", json=run("h-1:failed", "h-1:ok"), headers=ADMIN)
    assert answer.status_code == 201
    assert answer.json()["charged"] == {} and answer.json()["error_until"] is None
    assert len(world.db.state.vm_runs) == 1 and world.db.state.charges == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (run("h-1:failed", "h-9:ok"), "attempts[1].host"),
        (run("h-9:failed", "h-2:ok"), "attempts[0].host"),
        ({"vm_id": "vm-1", "attempts": []}, "attempts"),
        ({"vm_id": "vm-1", "attempts": [{"host": "h-1", "ok": "false"}, ONE]}, "attempts[0].ok"),
        ({"vm_id": "vm-1", "attempts": [{**ONE, "host": None}]}, "attempts[0].host"),
        ({"vm_id": "vm-1", "attempts": [ONE], "actor": "mallory"}, "actor"),
        ({"vm_id": ["vm-1"], "attempts": [ONE]}, "vm_id"),
    ],
)
def test_bad_reports_are_422_naming_the_field_and_write_nothing(
    world: World, body: dict[str, Any], field: str
) -> None:
    before = written(world)
    answer = world.call("POST", "/api/v1/vm-runs", json=body, headers=ADMIN)
    assert shape(answer) == (422, "invalid_input", field), answer.text
    assert answer.json()["message"].startswith(field + ": ")
    assert written(world) == before


def test_vm_runs_need_an_admin(world: World) -> None:
    before = written(world)
    body = run("h-1:failed", "h-2:ok")
    assert shape(world.call("POST", "/api/v1/vm-runs", json=body))[0] == 401
    assert shape(world.call("POST", "/api/v1/vm-runs", json=body, headers=VIEWER)) == (403, "forbidden", None)
    # A viewer's malformed body is refused for the caller, not for the body.
    assert shape(world.call("POST", "/api/v1/vm-runs", json={}, headers=VIEWER))[0] == 403
    assert written(world) == before


def test_placement_of_an_unknown_or_malformed_cluster(world: World) -> None:
    assert shape(world.call("GET", "/api/v1/clusters/c-9/placement", headers=VIEWER)) == (
        404,
        "not_found",
        "cluster_id",
    )
    assert shape(world.call("GET", "/api/v1/clusters/-c/placement", headers=VIEWER))[2] == "cluster_id"
    assert shape(world.call("GET", "/api/v1/clusters/c-1/placement"))[0] == 401
    empty = world.call("GET", "/api/v1/clusters/c-2/placement", headers=VIEWER)
    assert empty.json() == {"cluster": "c-2", "hosts": []}


# -- Storage domains -------------------------------------------------------------------------


def test_list_and_show(world: World) -> None:
    listed = world.call("GET", "/api/v1/storage-domains", headers=VIEWER)
    assert listed.status_code == 200
    domains = listed.json()["storage_domains"]
    assert [(d["id"], d["status"], d["autorecovery"]) for d in domains] == [
        ("sd-1", "active", True),
        ("sd-2", "active", True),
    ]
    shown = world.call("GET", "/api/v1/storage-domains/sd-1", headers=VIEWER).json()
    assert (shown["clusters"], shown["activation"]) == (["c-2"], None)
    assert shape(world.call("GET", "/api/v1/storage-domains/sd-9", headers=VIEWER)) == (
        404,
        "not_found",
        "storage_domain_id",
    )
    assert shape(world.call("GET", "/api/v1/storage-domains/.sd", headers=VIEWER)) == (
        422,
        "invalid_input",
        "storage_domain_id",
    )
    assert shape(world.call("GET", "/api/v1/storage-domains"))[0] == 401


def test_maintenance_then_activation_once(world: World) -> None:
    assert shape(world.call("POST", "/api/v1/storage-domains/sd-1/activate", headers=ADMIN)) == (
        409,
        "conflict",
        None,
    )  # it is active
    answer = world.call(
        "POST", "/api/v1/storage-domains/sd-1/maintenance", json={"reason": "array firmware"}, headers=ADMIN
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"storage_domain_id": "sd-1", "status": "maintenance", "detail": "array firmware"}
    assert world.call("GET", "/api/v1/storage-domains/sd-1", headers=VIEWER).json()["status"] == "maintenance"

    queued = world.call("POST", "/api/v1/storage-domains/sd-1/activate", headers=ADMIN)
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert body["task_id"] == body["activation_id"] and body["state"] == "queued"
    assert world.sent_domains == [(body["activation_id"], "sd-1", "manual", "alice")]
    shown = world.call("GET", "/api/v1/storage-domains/sd-1", headers=VIEWER).json()
    assert shown["activation"]["id"] == body["activation_id"]

    again = world.call("POST", "/api/v1/storage-domains/sd-1/activate", headers=ADMIN)
    assert shape(again) == (409, "activation_in_flight", None)
    assert (
        again.json()["holder"]["id"] == body["activation_id"] and "manual by alice" in again.json()["message"]
    )
    # Maintenance during an activation takes the domain from it: abandoned, its fence bumped.
    during = world.call("POST", "/api/v1/storage-domains/sd-1/maintenance", headers=ADMIN)
    assert during.status_code == 200, during.text
    shown = world.call("GET", "/api/v1/storage-domains/sd-1", headers=VIEWER).json()
    assert (shown["status"], shown["activation"]) == ("maintenance", None)
    assert len(world.sent_domains) == 1


def test_autorecovery_off_and_on_is_audited(world: World) -> None:
    for enabled in (False, True):
        answer = world.call(
            "PUT", "/api/v1/storage-domains/sd-2/autorecovery", json={"enabled": enabled}, headers=ADMIN
        )
        assert answer.json() == {"storage_domain_id": "sd-2", "autorecovery": enabled}
        shown = world.call("GET", "/api/v1/storage-domains/sd-2", headers=VIEWER).json()
        assert shown["autorecovery"] is enabled
    events = [(e["event"], e["actor"]) for e in world.views.audit_log(object_type="storage_domain", limit=10)]
    assert events[:2] == [("autorecovery_enabled", "alice"), ("autorecovery_disabled", "alice")]


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        (
            "PUT",
            "/api/v1/storage-domains/sd-1/autorecovery",
            {"enabled": "no"},
            (422, "invalid_input", "enabled"),
        ),
        ("PUT", "/api/v1/storage-domains/sd-1/autorecovery", {}, (422, "invalid_input", "enabled")),
        (
            "PUT",
            "/api/v1/storage-domains/sd-9/autorecovery",
            {"enabled": True},
            (404, "not_found", "storage_domain_id"),
        ),
        (
            "POST",
            "/api/v1/storage-domains/sd-1/maintenance",
            {"reason": ""},
            (422, "invalid_input", "reason"),
        ),
        ("POST", "/api/v1/storage-domains/sd-1/maintenance", {"why": "x"}, (422, "invalid_input", "why")),
        ("POST", "/api/v1/storage-domains/sd-9/maintenance", None, (404, "not_found", "storage_domain_id")),
        ("POST", "/api/v1/storage-domains/sd-9/activate", None, (404, "not_found", "storage_domain_id")),
    ],
)
def test_storage_refusals_write_nothing(
    world: World, method: str, path: str, body: Any, expected: tuple[int, str, str]
) -> None:
    before = copy.deepcopy(
        (world.db.state.storage_domains, world.db.state.sd_activations, world.db.state.audit)
    )
    kwargs = {} if body is None else {"json": body}
    assert shape(world.call(method, path, headers=ADMIN, **kwargs)) == expected
    for who, status in ((None, 401), (VIEWER, 403)):
        assert shape(world.call(method, path, headers=who, **kwargs))[0] == status
    assert (
        copy.deepcopy((world.db.state.storage_domains, world.db.state.sd_activations, world.db.state.audit))
        == before
    )
    assert world.sent_domains == []


# -- Metrics ---------------------------------------------------------------------------------


def _scrape(found: dict[str, Any], counters: list[dict[str, Any]] | None = None) -> str:
    counts = {"counters": counters or []}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(lambda: counts, lambda: None, None, lambda: found))
    return generate_latest(registry).decode()


def test_error_and_storage_metrics() -> None:
    text = _scrape(
        {
            "hosts_in_error": 2,
            "charges_recent": 7,
            "storage_domains": {"inactive": 1, "active": 4},
            "sd_in_flight": 2,
        },
        [
            {"name": "autorecovery_storage_domain_activations",
             "labels": {"trigger": "auto", "outcome": "active"}, "value": 3},
            {"name": "autorecovery_storage_domain_activations",
             "labels": {"trigger": "manual", "outcome": "failed"}, "value": 1},
        ],
    )
    assert "autorecovery_hosts_in_error 2.0" in text
    assert "autorecovery_charges_recent 7.0" in text
    assert 'autorecovery_storage_domains{status="active"} 4.0' in text
    assert 'autorecovery_storage_domains{status="maintenance"} 0.0' in text
    assert 'autorecovery_storage_domain_activations_total{outcome="active",trigger="auto"} 3.0' in text
    assert 'autorecovery_storage_domain_activations_total{outcome="failed",trigger="manual"} 1.0' in text
    assert "autorecovery_storage_domain_activations_in_flight 2.0" in text
    assert 'autorecovery_metrics_source_up{source="postgresql"} 1.0' in text


def test_error_and_storage_metrics_when_nothing_is_there() -> None:
    text = _scrape({"hosts_in_error": 0, "charges_recent": 0, "storage_domains": {}})
    assert "autorecovery_hosts_in_error 0.0" in text
    assert 'autorecovery_storage_domains{status="inactive"} 0.0' in text
    assert "autorecovery_storage_domain_activations_total{" not in text  # no activation yet
