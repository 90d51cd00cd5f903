"""The tick fans out across a real worker pool: duplicates stop, caps stay exact fleet-wide."""

from __future__ import annotations

import json
import time
from typing import Any

from autorecovery.adapters import keys
from tests.integration.conftest import send_ticks, settle, statuses
from tests.integration.test_safety import _max_concurrent


def test_fanned_out_ticks_with_duplicates_keep_the_caps_and_assess_each_host_once(
    sim: Any, worker_with: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=60, clusters=3)
    worker = worker_with(
        concurrency=2,
        AUTORECOVERY_BATCH_SIZE="7",
        AUTORECOVERY_CLUSTER_CAP="2",
        AUTORECOVERY_FLEET_CAP="4",
    )
    client.inject("init_delay", all_hosts=True, seconds=0.3)
    ran: list[dict[str, Any]] = []
    for _ in range(80):
        round_ = send_ticks(app_module, deps, copies=3)  # three beats at once
        done = [s for s in round_ if s.get("skipped") is None]
        assert len(done) == 1, round_
        assert all("duplicate" in str(s["skipped"]) for s in round_ if s not in done)
        ran += done
        if set(statuses(deps).values()) == {"up"}:
            break
    settle(deps)
    assert set(statuses(deps).values()) == {"up"}

    # Every tick that ran covered the whole fleet once: 9 batches of at most 7 hosts.
    assert all(s["hosts"] == 60 and s["batches"] == 9 for s in ran), ran
    with deps.db.transaction() as conn:
        per_tick = conn.execute(
            "SELECT t.id, t.state, count(b.idx) AS batches, sum((b.summary->>'hosts')::int) AS hosts "
            "FROM ticks t LEFT JOIN tick_batches b ON b.tick_id = t.id GROUP BY t.id, t.state"
        ).fetchall()
    assert {r["id"] for r in per_tick} == {s["tick_id"] for s in ran}
    assert all(r["state"] == "done" and r["batches"] == 9 and r["hosts"] == 60 for r in per_tick)

    # The caps held fleet-wide although batches were decided in two processes.
    calls = client.inits()
    assert len([c for c in calls if c["outcome"] == "ok"]) == 60
    cluster_of = {h["id"]: h["cluster"] for h in client.fleet()["hosts"]}
    for cluster in sorted(set(cluster_of.values())):
        assert _max_concurrent([c for c in calls if cluster_of[c["host_id"]] == cluster]) <= 2
    assert _max_concurrent(calls) <= 4
    assert client.overlaps()["count"] == 0
    # Both worker processes ran batches.
    log = worker.log()
    assert "ForkPoolWorker-1" in log and "ForkPoolWorker-2" in log
    assert log.count("autorecovery.monitoring_batch[") >= 9 * len(ran)


def test_ticks_sent_twice_per_interval_run_once_per_interval(
    sim: Any, worker: Any, app_module: Any, deps: Any
) -> None:
    """Two beats half an interval apart (1 s interval, a tick every 0.5 s): one tick per interval."""
    client = sim(hosts=6)
    send_ticks(app_module, deps)
    settle(deps)
    client.inject("kvm_down", hosts=["h-0002"])
    sent = []
    started = time.monotonic()
    while time.monotonic() - started < 8.0:
        sent.append(app_module.app.send_task(app_module.TICK_TASK, queue="monitoring").id)
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    time.sleep(2.0)
    with deps.db.transaction() as conn:
        claimed = conn.execute(
            "SELECT count(*) AS n FROM ticks WHERE id = ANY(%s)", (sent,)
        ).fetchone()
        audits = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE object_id = 'h-0002' AND event = 'status_changed'"
            " AND details->>'to' = 'non_operational'"
        ).fetchone()
    assert claimed is not None and audits is not None
    # 16 ticks sent in 8 s: about 8 ran (one per interval), never one per message.
    assert len(sent) >= 15
    assert 4 <= claimed["n"] <= int(elapsed) + 1, claimed
    assert audits["n"] == 1  # the transition was recorded once, not once per duplicate


def test_a_tick_over_an_empty_fleet_is_published_as_the_last_tick(
    worker: Any, app_module: Any, deps: Any
) -> None:
    [summary] = send_ticks(app_module, deps)
    assert (summary["hosts"], summary["batches"], summary["skipped"]) == (0, 0, None)
    last = deps.redis.get(keys.last_tick())
    assert last is not None and json.loads(last)["tick_id"] == summary["tick_id"]
