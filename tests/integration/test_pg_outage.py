"""PostgreSQL gone for a minute under running activations: the pool processes find it again.

The machine's PostgreSQL is shared, so the test cuts a TCP proxy it owns between the product's
processes and it: new connections are refused and open ones dropped, as when the server stops.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autorecovery.adapters import keys
from tests.integration.conftest import statuses
from tests.support.processes import Proc, start_beat, start_worker, wait_for
from tests.support.proxy import TcpProxy

OUTAGE_S = 60.0
INTERVAL_S = 2.0


@pytest.fixture
def pg_proxy(servers: Any) -> Iterator[TcpProxy]:
    proxy = TcpProxy.for_conninfo(servers.database_url)
    yield proxy
    proxy.close()


def _closed_ticks(deps: Any) -> list[dict[str, Any]]:
    """Summaries of the ticks that ran to their close, newest first."""
    found = [json.loads(raw) for raw in deps.redis.lrange(keys.tick_history(), 0, 99)]
    return [t for t in found if t.get("skipped") is None]


@pytest.mark.timeout(240)
def test_pool_processes_reach_postgresql_again_after_a_minute_away(
    sim: Any, servers: Any, logs: Path, deps: Any, pg_proxy: TcpProxy
) -> None:
    env = servers.env(
        AUTORECOVERY_DATABASE_URL=pg_proxy.conninfo(servers.database_url),
        AUTORECOVERY_TICK_INTERVAL_S=str(INTERVAL_S),
    )
    client = sim(hosts=8)
    # Activations and monitoring in pools of their own, as deploy/ runs them.
    procs: list[Proc] = [
        start_worker(env, logs, concurrency=2, queues="activation", name="pg-act"),
        start_worker(env, logs, concurrency=2, queues="monitoring", name="pg-mon"),
        start_beat(env, logs, name="pg-beat"),
    ]
    try:
        wait_for(lambda: set(statuses(deps).values()) == {"up"}, 45, "the fleet up")
        client.inject("kvm_down", all_hosts=True)
        wait_for(lambda: set(statuses(deps).values()) == {"non_operational"}, 30, "the fault seen")
        client.reset_record()
        client.inject("init_delay", all_hosts=True, seconds=2.0)
        client.clear(fault="kvm_down")
        wait_for(lambda: sum(c["ended_at"] is None for c in client.inits()) >= 2, 30, "inits running")

        pg_proxy.cut()
        time.sleep(OUTAGE_S)
        client.clear()
        pg_proxy.restore()
        back = time.time()

        def resumed() -> bool:
            return any(t["finished_at"] > back for t in _closed_ticks(deps))

        wait_for(resumed, 4 * INTERVAL_S + 10, "a tick closed after PostgreSQL returned")
        first = min(t["finished_at"] for t in _closed_ticks(deps) if t["finished_at"] > back)
        wait_for(lambda: set(statuses(deps).values()) == {"up"}, 30, "every host up after the outage")
        up_after_s = time.time() - back

        assert all(p.popen.poll() is None for p in procs), "a process of the product exited"
        # A tick is claimed at the first beat after the store returns and closes within its run.
        assert first - back <= 2 * INTERVAL_S, f"first tick closed {first - back:.1f}s after PostgreSQL"
        assert up_after_s <= 30
        assert client.overlaps()["count"] == 0
        assert "initializing" not in statuses(deps).values()
    finally:
        for proc in procs:
            proc.stop()
