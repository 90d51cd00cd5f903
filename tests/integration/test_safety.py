"""Safety under storms and flapping, end to end: caps, backoff, quarantine, the observer, pauses.

Each test starts its own worker (settings differ per test), never the module's shared one.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from autorecovery.services.fleet import HostSpec
from tests.integration.conftest import host_status, send_ticks, settle, statuses
from tests.support.processes import wait_for


def _max_concurrent(calls: list[dict[str, Any]]) -> int:
    """The most accepted init calls that ran at the same time."""
    edges: list[tuple[datetime, int]] = []
    for call in calls:
        if call["outcome"] == "stale_fence":
            continue
        start = datetime.fromisoformat(call["started_at"])
        end = datetime.fromisoformat(call["ended_at"]) if call["ended_at"] else datetime.now(UTC)
        edges += [(start, 1), (end, -1)]
    peak = level = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        level += step
        peak = max(peak, level)
    return peak


def _fleet_up(client: Any, worker_with: Any, app_module: Any, deps: Any) -> Any:
    """Start a default worker and bring the simulated fleet up; return the simulator's client."""
    worker_with()
    send_ticks(app_module, deps)
    settle(deps)
    return client


def test_storm_on_a_shared_storage_domain_recovers_in_capped_waves(
    sim: Any, worker_with: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=200, clusters=4, shared_storage_domain=True)
    worker_with(AUTORECOVERY_CLUSTER_CAP="3", AUTORECOVERY_FLEET_CAP="8")
    client.inject("init_delay", all_hosts=True, seconds=0.2)
    for _ in range(60):
        send_ticks(app_module, deps)
        if set(statuses(deps).values()) == {"up"}:
            break
    assert set(statuses(deps).values()) == {"up"}
    client.reset_record()

    client.inject("sd_down", storage_domain="sd-shared")
    send_ticks(app_module, deps)
    assert set(statuses(deps).values()) == {"non_operational"}
    client.clear(fault="sd_down", target="sd-shared")
    for _ in range(80):
        send_ticks(app_module, deps)
        if set(statuses(deps).values()) == {"up"}:
            break
    settle(deps)
    assert set(statuses(deps).values()) == {"up"}

    calls = client.inits()
    assert len([c for c in calls if c["outcome"] == "ok"]) == 200
    cluster_of = {h["id"]: h["cluster"] for h in client.fleet()["hosts"]}
    for cluster in sorted(set(cluster_of.values())):
        in_cluster = [c for c in calls if cluster_of[c["host_id"]] == cluster]
        assert _max_concurrent(in_cluster) <= 3, cluster
    assert 1 < _max_concurrent(calls) <= 8
    assert client.overlaps()["count"] == 0
    with deps.db.transaction() as conn:
        events = conn.execute(
            "SELECT object_id, event FROM audit_log WHERE event LIKE 'incident_%%' ORDER BY id"
        ).fetchall()
        capped = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE event = 'activation_queued'"
        ).fetchone()
    opened = sorted(e["object_id"] for e in events if e["event"] == "incident_opened")
    closed = sorted(e["object_id"] for e in events if e["event"] == "incident_closed")
    assert opened == closed == ["c-1", "c-2", "c-3", "c-4"]
    assert capped is not None and capped["n"] >= 400


def test_failing_host_backs_off_exponentially_then_is_quarantined_until_an_admin_clears_it(
    sim: Any, worker_with: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=1)
    client.inject("init_fail", hosts=["h-0001"], reason="general", detail="qemu is broken")
    worker_with(AUTORECOVERY_FLAP_LIMIT="4", AUTORECOVERY_BACKOFF_MAX_S="60")
    deadline = datetime.now(UTC) + timedelta(seconds=60)
    while host_status(deps, "h-0001")["quarantined_at"] is None and datetime.now(UTC) < deadline:
        send_ticks(app_module, deps)
        settle(deps)
    row = host_status(deps, "h-0001")
    assert row["quarantined_at"] is not None, row
    assert (row["status"], row["reason"], row["failures"]) == ("non_operational", "general", 4)

    with deps.db.transaction() as conn:
        acts = conn.execute(
            "SELECT started_at FROM activations WHERE host_id = 'h-0001' AND trigger = 'auto' "
            "AND state = 'failed' ORDER BY started_at"
        ).fetchall()
    starts = [a["started_at"] for a in acts]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert len(starts) == 4
    # The k-th wait is at least half of one tick * 2**(k-1): 0.5 s, 1 s, 2 s; it grows.
    for k, gap in enumerate(gaps, start=1):
        assert gap >= 0.5 * 2 ** (k - 1), gaps
    assert gaps[-1] > gaps[0]

    # Quarantined: ticks leave it alone and say why.
    for _ in range(3):
        send_ticks(app_module, deps)
    settle(deps)
    assert len(client.inits("h-0001")) == 4
    assert host_status(deps, "h-0001")["last_decision"] == "quarantined"

    client.clear(hosts=["h-0001"])
    cleared = deps.safety.clear_holds("h-0001", "alice", quarantine=True)
    assert cleared["failures"] == 4 and cleared["quarantined_at"] is not None
    send_ticks(app_module, deps)
    settle(deps)
    assert host_status(deps, "h-0001")["status"] == "up"
    with deps.db.transaction() as conn:
        story = conn.execute(
            "SELECT event, actor FROM audit_log WHERE object_id = 'h-0001' "
            "AND event IN ('backoff', 'quarantined', 'quarantine_cleared') ORDER BY id"
        ).fetchall()
    assert [(s["event"], s["actor"]) for s in story] == [
        ("backoff", "auto")] * 4 + [("quarantined", "auto"), ("quarantine_cleared", "alice")]


def test_stale_monitoring_for_most_of_the_fleet_stops_automatic_activation(
    sim: Any, worker_with: Any, app_module: Any, deps: Any, fleet_service: Any
) -> None:
    client = _fleet_up(sim(hosts=10), worker_with, app_module, deps)
    client.inject("kvm_down", hosts=["h-0001", "h-0002"])
    send_ticks(app_module, deps)
    silent = [f"h-{i:04d}" for i in range(3, 10)]
    client.inject("silent", hosts=silent)
    client.clear(hosts=["h-0001", "h-0002"])
    for _ in range(2):
        send_ticks(app_module, deps)
    settle(deps)
    assert host_status(deps, "h-0001")["status"] == "non_operational"
    assert host_status(deps, "h-0001")["last_decision"] == "observer_unhealthy"
    plan = {p["host_id"]: p for p in deps.views.plan()}
    assert plan["h-0001"]["code"] == "observer_unhealthy"
    assert plan["h-0001"]["detail"].startswith(
        "monitoring_stale: 7 of 10 hosts have no fresh data (limit 50%): "
        "h-0003, h-0004, h-0005, h-0006, h-0007 and 2 more;"
    )
    assert len(client.inits("h-0001")) == 1  # the first activation only, none while gated

    client.clear(hosts=silent)
    send_ticks(app_module, deps)
    settle(deps)
    send_ticks(app_module, deps)
    settle(deps)
    assert set(statuses(deps).values()) == {"up"}


def test_an_inventory_imported_before_its_agents_run_leaves_the_gate_open(
    sim: Any, worker_with: Any, app_module: Any, deps: Any, fleet_service: Any
) -> None:
    client = _fleet_up(sim(hosts=2), worker_with, app_module, deps)
    # 30 hosts imported whose agents do not run yet: nothing listens on their port.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    cluster = client.fleet()["hosts"][0]["cluster"]
    new = [f"n-{i:04d}" for i in range(30)]
    fleet_service.register_hosts(
        [HostSpec(h, cluster, f"http://127.0.0.1:{dead_port}/{h}") for h in new], "alice"
    )
    client.inject("kvm_down", hosts=["h-0001"])
    send_ticks(app_module, deps)
    client.clear(hosts=["h-0001"])
    summary = send_ticks(app_module, deps)[0]
    settle(deps)
    assert (summary["gate"], summary["observed"], summary["silent"]) == (None, 2, 0)
    assert host_status(deps, "h-0001")["status"] == "up"
    assert {statuses(deps)[h] for h in new} == {"unassigned"}
    with deps.db.transaction() as conn:
        observer = conn.execute("SELECT gate, silent_hosts, observed_hosts FROM observer").fetchone()
    assert observer is not None and dict(observer) == {"gate": None, "silent_hosts": 0, "observed_hosts": 2}


def test_quiet_period_waits_for_a_full_tick_of_fresh_data(
    sim: Any, worker_with: Any, app_module: Any, deps: Any
) -> None:
    sim(hosts=2)
    worker_with(AUTORECOVERY_OBSERVER_QUIET_PERIOD="true")
    first = send_ticks(app_module, deps)[0]
    assert first["enqueued"] == 0 and first["gate"].startswith("quiet_period")
    assert host_status(deps, "h-0001")["last_decision"] == "observer_unhealthy"
    second = send_ticks(app_module, deps)[0]
    assert second["enqueued"] == 2 and second["gate"] is None
    settle(deps)
    assert set(statuses(deps).values()) == {"up"}


def test_pause_with_expiry_stops_automatic_activation_and_ends_by_itself(
    sim: Any, worker_with: Any, app_module: Any, deps: Any, fleet_service: Any
) -> None:
    client = sim(hosts=2)
    worker_with()
    send_ticks(app_module, deps)
    settle(deps)
    client.inject("kvm_down", hosts=["h-0001", "h-0002"])
    send_ticks(app_module, deps)
    expires = datetime.now(UTC) + timedelta(seconds=4)
    deps.safety.pause("fleet", "storage maintenance window", "alice", expires)
    client.clear(hosts=["h-0001", "h-0002"])
    send_ticks(app_module, deps)
    settle(deps)
    row = host_status(deps, "h-0001")
    assert (row["status"], row["last_decision"]) == ("non_operational", "paused")
    assert "alice" in row["last_decision_detail"]

    # A manual activation still works during the pause.
    fleet_service.request_activation("h-0002", "bob")
    settle(deps)
    assert host_status(deps, "h-0002")["status"] == "up"

    wait_for(lambda: datetime.now(UTC) > expires, 10, "the pause to expire")
    send_ticks(app_module, deps)
    settle(deps)
    assert host_status(deps, "h-0001")["status"] == "up"
    with deps.db.transaction() as conn:
        events = conn.execute(
            "SELECT event, actor FROM audit_log WHERE object_type = 'pause' ORDER BY id"
        ).fetchall()
    assert [(e["event"], e["actor"]) for e in events] == [("paused", "alice"), ("pause_expired", "auto")]
