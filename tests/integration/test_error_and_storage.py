"""Error state from VM placement feedback, placement ranking, and storage domain autorecovery."""

from __future__ import annotations

import time
from typing import Any

from autorecovery.bootstrap import build_services
from autorecovery.services import utcnow
from autorecovery.services.vmruns import VmRunService
from models.placement import Attempt
from tests.integration.conftest import host_status, send_ticks, settle, statuses


def _runs(deps: Any, **policy: float) -> VmRunService:
    """The VM run service over the test process's adapters, with its own error policy."""
    return build_services(deps.settings.model_copy(update=policy), deps.adapters).vmruns


def _fail_then_start(bad: str, good: str) -> list[Attempt]:
    return [Attempt(bad, False, "qemu-kvm: failed"), Attempt(good, True)]


def _up(app_module: Any, deps: Any) -> None:
    for _ in range(5):
        send_ticks(app_module, deps)
        settle(deps)
        if set(statuses(deps).values()) == {"up"}:
            return
    raise AssertionError(statuses(deps))


def test_error_cycle_charges_error_period_and_return_only_when_clean(
    sim: Any, worker_with: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=4)
    worker_with()
    _up(app_module, deps)
    runs = _runs(deps, charge_limit=3, charge_window_s=60, error_period_s=3)
    client.inject("vm_fail", hosts=["h-0001", "h-0002"])
    for i in range(3):
        out = runs.record(f"vm-a{i}", _fail_then_start("h-0001", "h-0003"), "scheduler")
        runs.record(f"vm-b{i}", _fail_then_start("h-0002", "h-0004"), "scheduler")
    assert out["errored"] == ["h-0001"] and out["charged"] == {"h-0001": 3}
    assert host_status(deps, "h-0001")["status"] == "error"
    assert host_status(deps, "h-0002")["status"] == "error"
    ranked = [p["host_id"] for p in runs.placement("c-1")]
    assert "h-0001" not in ranked and "h-0002" not in ranked

    # h-0002 also loses kvm: monitoring still shows a problem, so it must stay out.
    client.inject("kvm_down", hosts=["h-0002"])
    send_ticks(app_module, deps)
    settle(deps)
    assert host_status(deps, "h-0001")["last_decision"] == "error_period"
    before = len(client.inits("h-0001"))

    time.sleep(3.2)  # the error period passes
    send_ticks(app_module, deps)
    settle(deps)
    row = host_status(deps, "h-0001")
    assert (row["status"], row["error_until"]) == ("up", None), row["last_decision_detail"]
    assert len(client.inits("h-0001")) == before + 1
    back = {p["host_id"]: p for p in runs.placement("c-1")}["h-0001"]
    assert back["recent_charges"] == 0  # its charges were cleared when it came back
    stuck = host_status(deps, "h-0002")
    assert (stuck["status"], stuck["last_decision"]) == ("error", "has_problems")
    assert len(client.inits("h-0002")) == 1  # the first activation only, none from error
    with deps.db.transaction() as conn:
        events = conn.execute(
            "SELECT event FROM audit_log WHERE object_id = 'h-0001' AND event IN "
            "('charged', 'status_changed', 'charges_cleared') ORDER BY id"
        ).fetchall()
    names = [e["event"] for e in events]
    assert names.count("charged") == 3 and names[-1] == "charges_cleared"


def test_charges_older_than_the_window_do_not_count(sim: Any, deps: Any, fleet_service: Any) -> None:
    sim(hosts=2)
    with deps.db.transaction() as conn:
        conn.execute("UPDATE hosts SET status = 'up'")
    runs = _runs(deps, charge_limit=3, charge_window_s=1.0, error_period_s=60)
    for i in range(2):
        runs.record(f"vm-{i}", _fail_then_start("h-0001", "h-0002"), "scheduler")
    time.sleep(1.2)
    out = runs.record("vm-late", _fail_then_start("h-0001", "h-0002"), "scheduler")
    assert out["charged"] == {"h-0001": 1} and out["errored"] == []
    assert host_status(deps, "h-0001")["status"] == "up"


def _load(host_id: str, vms: int, free_gb: int) -> dict[str, Any]:
    return {"host_id": host_id, "reported_at": utcnow().isoformat(), "kvm": True,
            "version": "4.5.2", "cpu_flags": ["vmx"], "networks": {"mgmt": True, "vmnet": True},
            "storage_domains": {"sd-c-1-1": True, "sd-c-1-2": True}, "vms_running": vms,
            "mem_free_mb": free_gb * 1024}


def test_a_lightly_loaded_host_with_charges_ranks_below_a_busier_clean_one(
    sim: Any, deps: Any, fleet_service: Any
) -> None:
    sim(hosts=3)
    with deps.db.transaction() as conn:
        conn.execute("UPDATE hosts SET status = 'up', reason = NULL")
    fleet_service.receive_report("h-0001", _load("h-0001", vms=1, free_gb=30), "agent")
    fleet_service.receive_report("h-0002", _load("h-0002", vms=6, free_gb=20), "agent")
    fleet_service.receive_report("h-0003", _load("h-0003", vms=12, free_gb=8), "agent")
    runs = _runs(deps, charge_limit=3, charge_window_s=600, error_period_s=60)
    assert [p["host_id"] for p in runs.placement("c-1")] == ["h-0001", "h-0002", "h-0003"]

    # One VM fails on the least loaded host and starts on the next: the light host is charged.
    runs.record("vm-x", _fail_then_start("h-0001", "h-0002"), "scheduler")
    ranking = runs.placement("c-1")
    assert [p["host_id"] for p in ranking] == ["h-0002", "h-0001", "h-0003"]
    light = ranking[1]
    assert light["recent_charges"] == 1 and light["terms"]["recent_charges"] == -20.0
    assert light["terms"]["free_memory"] > ranking[0]["terms"]["free_memory"]

    # Hosts that are not up are left out of the ranking.
    with deps.db.transaction() as conn:
        conn.execute("UPDATE hosts SET status = 'error' WHERE id = 'h-0003'")
    assert [p["host_id"] for p in runs.placement("c-1")] == ["h-0002", "h-0001"]


#: How long a domain no up host reaches stays active. While every host is down, a domain revived
#: through a non-up host must still be active when the hosts' activations re-check it: its connect
#: closes in the check step (AUTORECOVERY_INIT_POLL_S after the send step, after that round's host
#: re-checks), so the hosts pass on the next round, a tick interval (1 s here) or more later. A
#: window of one interval expired between the two rounds: the domains flapped back to inactive
#: round after round and no host ever saw all of its domains active.
SD_INACTIVE_AFTER_S = 3.0


def test_shared_domain_lost_by_every_host_is_activated_once_then_hosts_return(
    sim: Any, worker_with: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=6, clusters=2, shared_storage_domain=True)
    worker_with(AUTORECOVERY_SD_INACTIVE_AFTER_S=str(SD_INACTIVE_AFTER_S))
    _up(app_module, deps)
    # A domain in maintenance is never touched.
    deps.storage.set_maintenance("sd-c-1-2", "alice", "array firmware upgrade")

    client.inject("sd_down", storage_domain="sd-shared")
    send_ticks(app_module, deps)
    assert set(statuses(deps).values()) == {"non_operational"}
    time.sleep(SD_INACTIVE_AFTER_S + 0.2)
    send_ticks(app_module, deps)
    assert deps.storage.get("sd-shared")["status"] == "inactive"

    client.reset_record()
    client.clear(fault="sd_down", target="sd-shared")
    send_ticks(app_module, deps)
    settle(deps)
    assert {host_status(deps, h)["last_decision"] for h in statuses(deps)} == {
        "storage_domain_inactive"}
    for _ in range(4):
        send_ticks(app_module, deps)
        settle(deps)
        if set(statuses(deps).values()) == {"up"}:
            break
    assert set(statuses(deps).values()) == {"up"}, [
        (h, host_status(deps, h)["last_decision"], host_status(deps, h)["last_decision_detail"])
        for h, s in statuses(deps).items() if s != "up"]
    shared = deps.storage.get("sd-shared")
    assert shared["status"] == "active"

    connects = client.connects(sd_id="sd-shared")
    assert [c["outcome"] for c in connects] == ["ok"]
    first_init = min(c["started_at"] for c in client.inits())
    assert connects[0]["ended_at"] <= first_init  # the shared object first, then the hosts
    overlaps = client.overlaps()
    assert overlaps["count"] == 0 and overlaps["storage_domain_count"] == 0
    assert client.connects(sd_id="sd-c-1-2") == []
    assert deps.storage.get("sd-c-1-2")["status"] == "maintenance"
