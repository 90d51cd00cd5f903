"""100 flapping hosts, four worker processes and duplicated ticks: never two inits at once."""

from __future__ import annotations

import random
from typing import Any

from tests.integration.conftest import send_ticks, settle, statuses


def test_flapping_fleet_has_no_overlapping_inits_and_ends_up(
    sim: Any, worker: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=100, clusters=4)
    rng = random.Random(7)
    fleet = client.fleet()
    clusters = {c["id"]: c for c in fleet["clusters"]}
    host_ids = [h["id"] for h in fleet["hosts"]]
    cluster_of = {h["id"]: h["cluster"] for h in fleet["hosts"]}

    for _ in range(8):
        client.clear()
        for host_id in rng.sample(host_ids, 30):
            kind = rng.choice(["sd_down", "nic_down", "kvm_down", "init_delay"])
            params: dict[str, Any] = {}
            if kind == "sd_down":
                params["target"] = rng.choice(clusters[cluster_of[host_id]]["storage_domains"])
            elif kind == "nic_down":
                params["target"] = "vmnet"
            elif kind == "init_delay":
                params["seconds"] = rng.uniform(0.1, 0.6)
            client.inject(kind, hosts=[host_id], **params)
        # Duplicated ticks: two beats, or a redelivery, send the same tick twice at once.
        send_ticks(app_module, deps, copies=2)

    client.clear()
    for _ in range(4):
        if set(statuses(deps).values()) == {"up"}:
            break
        send_ticks(app_module, deps, copies=2)
        settle(deps, timeout_s=60)

    overlaps = client.overlaps()
    assert overlaps["count"] == 0, overlaps["hosts"]
    final = statuses(deps)
    assert [h for h, s in final.items() if s != "up"] == []
    # No host ever had two activations in flight: each init call has its own fence.
    calls = [c for c in client.inits() if c["outcome"] != "stale_fence"]
    per_host: dict[str, list[int]] = {}
    for call in calls:
        per_host.setdefault(call["host_id"], []).append(call["fence"])
    assert all(len(f) == len(set(f)) for f in per_host.values())
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM activations WHERE state IN ('queued', 'sending', 'sent')"
        ).fetchone()
    assert row is not None and row["n"] == 0
