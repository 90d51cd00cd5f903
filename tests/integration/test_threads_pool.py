"""Activation steps run in threads (``-P threads``): as safe as in pool processes.

An activation's steps wait on I/O (PostgreSQL, Redis, an agent), so one worker process can run
many at once in threads. Two such workers (4 threads each) beside a monitoring worker, v2
agents: the hosts whose inits hang stay held (one init each, never a second) and no more of
them than there are hung agents; every other host comes up through duplicate ticks and a
duplicate delivery of every first step; no init ever overlaps another on a host; once the hung
agents answer again, their hosts come up with no second init.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import host_status, send_ticks, statuses
from tests.support.processes import Proc, start_worker, wait_for

THREADS = 4
WORKERS = 2
SETTINGS = {
    "AUTORECOVERY_INIT_MAX_S": "120",  # longer than the test: the hung hosts stay held
    "AUTORECOVERY_INIT_POLL_S": "0.5",
    "AUTORECOVERY_DB_POOL_MAX": str(THREADS),
}


def _activations(deps: Any) -> list[dict[str, Any]]:
    with deps.db.transaction() as conn:
        rows = conn.execute(
            "SELECT id, host_id, trigger, actor, state FROM activations ORDER BY queued_at"
        ).fetchall()
    return [dict(r) for r in rows]


def test_steps_in_threads_hold_the_hung_hosts_and_never_overlap_or_repeat_an_init(
    sim: Any, servers: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=20, protocol=2)
    hosts = sorted(h["id"] for h in client.fleet()["hosts"])
    hung, others = hosts[: WORKERS * THREADS], hosts[WORKERS * THREADS :]
    env = servers.env(**SETTINGS)
    procs: list[Proc] = [start_worker(env, logs, concurrency=1, queues="monitoring", name="threads-mon")]
    try:
        procs += [
            start_worker(
                env, logs, concurrency=THREADS, queues="activation", pool="threads", name=f"threads{i}"
            )
            for i in range(WORKERS)
        ]

        def all_up() -> bool:
            send_ticks(app_module, deps, copies=2)
            return set(statuses(deps).values()) == {"up"}

        wait_for(all_up, 60, "the fleet up", interval_s=0.5)
        client.reset_record()  # count the inits from here on
        before = {a["id"] for a in _activations(deps)}

        client.inject("kvm_down", all_hosts=True)
        wait_for(
            lambda: send_ticks(app_module, deps) is not None
            and set(statuses(deps).values()) == {"non_operational"},
            30,
            "every host out",
            interval_s=0.5,
        )
        client.inject("init_hang", hosts=hung)
        client.clear(fault="kvm_down")
        send_ticks(app_module, deps, copies=2)
        # Every first step delivered twice, as a broker may: the same task id, the same kwargs.
        sent_again = [a for a in _activations(deps) if a["id"] not in before]
        for act in sent_again:
            app_module.enqueue_activation(act["id"], act["host_id"], act["trigger"], act["actor"])
        assert {a["host_id"] for a in sent_again} == set(hosts)

        def others_up() -> bool:
            send_ticks(app_module, deps, copies=2)
            found = statuses(deps)
            return all(found[h] == "up" for h in others)

        wait_for(others_up, 90, "the hosts with answering agents up", interval_s=0.5)
        time.sleep(2.0)  # the hung hosts' next steps come and go

        for host_id in hung:
            row = host_status(deps, host_id)
            held = (row["status"], row["failures"], row["quarantined_at"])
            assert held == ("initializing", 0, None), host_id
            assert len(client.inits(host_id)) == 1, (host_id, client.inits(host_id))
        for host_id in others:
            assert len(client.inits(host_id)) == 1, (host_id, client.inits(host_id))
        assert client.overlaps()["count"] == 0

        client.clear(hosts=hung, fault="init_hang")

        def hung_up() -> bool:
            send_ticks(app_module, deps)
            return set(statuses(deps).values()) == {"up"}

        wait_for(hung_up, 60, "the hung hosts up once their agents answer", interval_s=0.5)
        assert all(len(client.inits(h)) == 1 for h in hung), {h: client.inits(h) for h in hung}
        assert client.overlaps()["count"] == 0
        for proc in procs[1:]:
            assert f"concurrency: {THREADS} (thread)" in proc.log(), proc.log()[:2000]
            assert "Traceback" not in proc.log(), proc.log()[-4000:]
    finally:
        for proc in procs:
            proc.stop()
