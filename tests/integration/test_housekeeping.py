"""Housekeeping in a task of its own: 200 dead agents cost the tick nothing, live ones are told.

A real beat sends ticks and housekeeping runs to a real worker. 200 hosts have agents that are
dead (half refuse connections, half accept and never answer) and 5 are the simulator's; every
host has a fence its agent has not learnt. Tick durations are measured before the fences are
marked (the baseline, same run, same fleet) and while the housekeeping pushes them.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from autorecovery.adapters import keys
from autorecovery.services.fleet import HostSpec
from models.domain import Cluster
from tests.support.processes import start_beat, wait_for

DEAD = 200
LIVE = 5


@pytest.fixture
def dead_agents() -> Iterator[tuple[str, str]]:
    """Two addresses: one that refuses connections, one that accepts them and never answers."""
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4096)  # the kernel completes handshakes; nobody ever reads or answers
    yield (
        f"http://127.0.0.1:{refusing.getsockname()[1]}",
        f"http://127.0.0.1:{silent.getsockname()[1]}",
    )
    refusing.close()
    silent.close()


def _tick_durations(deps: Any, since: float) -> list[float]:
    found = [json.loads(raw) for raw in deps.redis.lrange(keys.tick_history(), 0, 99)]
    return [float(t["duration_s"]) for t in found if t.get("skipped") is None and t["finished_at"] > since]


def _pending(deps: Any, prefix: str) -> int:
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM hosts WHERE agent_fence_pending AND id LIKE %s", (prefix + "%",)
        ).fetchone()
    return int(row["n"])


def test_dead_agents_cost_the_tick_nothing_and_live_agents_learn_their_fence(
    sim: Any,
    worker: Any,
    servers: Any,
    logs: Path,
    deps: Any,
    fleet_service: Any,
    dead_agents: tuple[str, str],
) -> None:
    sim(hosts=LIVE)
    fleet_service.register_cluster(Cluster("c-dead"), "test")
    fleet_service.register_hosts(
        [HostSpec(f"d-{i:04d}", "c-dead", dead_agents[i % 2]) for i in range(DEAD)], "test"
    )
    beat = start_beat(servers.env(), logs, name="housekeeping-beat")
    try:
        start = time.time()
        wait_for(lambda: len(_tick_durations(deps, start)) >= 8, 60, "baseline ticks")
        baseline = max(_tick_durations(deps, start))

        with deps.db.transaction() as conn:  # every agent has a fence to learn
            conn.execute("UPDATE hosts SET fence = fence + 1, agent_fence_pending = true")
        marked = time.time()
        runs: set[str] = set()

        def told() -> bool:
            raw = deps.redis.get(keys.last_housekeeping())
            last = json.loads(raw) if raw else {}
            if last.get("skipped") is None and last.get("finished_at", 0) > marked:
                runs.add(last["run_id"])
            return _pending(deps, "h-") == 0

        wait_for(told, 30, "the live agents told their fence")
        told_s = time.time() - marked
        wait_for(lambda: len(_tick_durations(deps, marked)) >= 8, 60, "ticks while pushing fences")
        pushing = max(_tick_durations(deps, marked))
        last = json.loads(deps.redis.get(keys.last_housekeeping()))
    finally:
        beat.stop()

    print(
        f"longest tick {baseline:.3f}s before, {pushing:.3f}s while pushing; "
        f"live told in {told_s:.1f}s, {len(runs)} housekeeping runs"
    )
    # Before, one run pushed fences inside the coordinator: 100 silent agents, 32 at a time, each
    # up to the agent timeout (1 s), added seconds to every tick.
    assert pushing <= baseline * 1.5 + 0.5, (baseline, pushing)
    # Told within a few runs: the first run takes 200 never-asked agents in id order (the dead
    # ones here), the next one the live agents first.
    assert len(runs) <= 3, (told_s, runs)
    assert _pending(deps, "d-") == DEAD  # still marked: asked again after their backoff
    assert last["skipped"] is None or "lease" in last["skipped"]
