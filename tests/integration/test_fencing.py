"""A lock holder frozen past its TTL, then resumed, changes nothing and never calls the agent."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import host_status, send_ticks
from tests.support.processes import start_worker, wait_for

#: Short lock and limits so that the frozen holder's lock expires and is reaped quickly.
FAST = {
    "AUTORECOVERY_INIT_TIMEOUT_S": "1.5",
    "AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S": "2",
    "AUTORECOVERY_ACTIVATION_TIME_LIMIT_S": "3",
    "AUTORECOVERY_LOCK_TTL_S": "4",
    # A reaped holder's host is held this long (its init may have been sent): short here.
    "AUTORECOVERY_INIT_MAX_S": "6",
}


def _snapshot(deps: Any, host_id: str) -> dict[str, Any]:
    with deps.db.transaction() as conn:
        host = conn.execute("SELECT * FROM hosts WHERE id = %s", (host_id,)).fetchone()
        acts = conn.execute(
            "SELECT * FROM activations WHERE host_id = %s ORDER BY queued_at", (host_id,)
        ).fetchall()
        audit = conn.execute("SELECT count(*) AS n FROM audit_log").fetchone()
    return {"host": dict(host or {}), "activations": [dict(a) for a in acts], "audit": audit}


def test_frozen_holder_is_fenced_out(
    sim: Any, servers: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=1)
    ticker = start_worker(servers.env(**FAST), logs, queues="monitoring", concurrency=1,
                          name="ticker")
    # The first holder freezes itself (SIGSTOP) right before it calls the agent's init.
    frozen = start_worker(servers.env(**FAST, AUTORECOVERY_FAILPOINTS="stop_before_init"), logs,
                          queues="activation", pool="solo", name="frozen")
    second = None
    try:
        send_ticks(app_module, deps)
        wait_for(lambda: host_status(deps, "h-0001")["status"] == "initializing", 20,
                 "the first holder to start")
        wait_for(lambda: "failpoint stop_before_init" in frozen.log(), 20, "the failpoint")
        stale_fence = host_status(deps, "h-0001")["fence"]

        # Past the lock TTL and the hard limit, a tick abandons the activation and bumps the fence.
        time.sleep(float(FAST["AUTORECOVERY_ACTIVATION_TIME_LIMIT_S"])
                   + float(FAST["AUTORECOVERY_LOCK_TTL_S"]) + 0.5)
        assert deps.redis.get("autorecovery:lock:host:h-0001") is None
        send_ticks(app_module, deps)
        assert host_status(deps, "h-0001")["reason"] == "activation_failed"
        # The holder had set initializing: its init may have been sent, so the host is held.
        assert host_status(deps, "h-0001")["init_hold_until"] is not None
        time.sleep(float(FAST["AUTORECOVERY_INIT_MAX_S"]) + 0.5)

        # A second worker activates the host with a newer fence.
        second = start_worker(servers.env(**FAST), logs, queues="activation", name="second")
        send_ticks(app_module, deps)
        wait_for(lambda: host_status(deps, "h-0001")["status"] == "up", 20, "the second holder")
        assert host_status(deps, "h-0001")["fence"] > stale_fence
        before = _snapshot(deps, "h-0001")

        frozen.popen.send_signal(signal.SIGCONT)
        # Right before the agent call it asks Redis (not its renewer's last word): not ours.
        wait_for(lambda: "no agent call" in frozen.log(), 20, "the resumed holder to stop")
        wait_for(lambda: "wrote nothing" in frozen.log(), 20, "the resumed holder to finish")
        after = _snapshot(deps, "h-0001")
        assert after == before, "the stale holder changed PostgreSQL"
        assert [c for c in client.inits("h-0001") if c["fence"] == stale_fence] == []
        assert client.overlaps()["count"] == 0
    finally:
        for proc in (frozen, ticker, second):
            if proc is not None:
                proc.stop()
