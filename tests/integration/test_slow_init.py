"""Inits that outlast the init timeout, on the simulator's v1 agents: never two at once.

Two workers, duplicate ticks every half second, every init slower than
``AUTORECOVERY_INIT_TIMEOUT_S``: the product does not see the outcome, so it holds each host for
``AUTORECOVERY_INIT_MAX_S`` (its activation ``sent``, outcome unknown) instead of counting a
failure and sending another.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import host_status, send_ticks, statuses
from tests.support.processes import start_worker, wait_for

SLOW = {
    "AUTORECOVERY_INIT_TIMEOUT_S": "1",
    "AUTORECOVERY_INIT_MAX_S": "5",
    "AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S": "7",
    "AUTORECOVERY_ACTIVATION_TIME_LIMIT_S": "8",
    "AUTORECOVERY_LOCK_TTL_S": "10",
}
INIT_DELAY_S = 3.0


def _held_unknown(deps: Any) -> set[str]:
    """Hosts an activation held as ``sent`` with its init's answer unseen."""
    with deps.db.transaction() as conn:
        rows = conn.execute("SELECT host_id FROM activations WHERE answer = 'unknown'").fetchall()
    return {r["host_id"] for r in rows}


def _abandoned_unknown(deps: Any) -> int:
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM activations WHERE state = 'abandoned' AND outcome = 'outcome_unknown'"
        ).fetchone()
    return int(row["n"]) if row else 0


def test_slow_inits_on_v1_agents_never_overlap_and_every_host_ends_up(
    sim: Any, servers: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=3, protocol=1)
    hosts = sorted(h["id"] for h in client.fleet()["hosts"])
    client.inject("init_delay", all_hosts=True, seconds=INIT_DELAY_S)
    procs = [start_worker(servers.env(**SLOW), logs, concurrency=2, name=f"slow{i}") for i in range(2)]
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            send_ticks(app_module, deps, copies=2)
            time.sleep(0.5)
        assert client.overlaps()["count"] == 0
        assert _abandoned_unknown(deps) >= len(hosts)
        assert _held_unknown(deps) == set(hosts)  # each held by its record, init_max_s
        for host_id in hosts:
            row = host_status(deps, host_id)
            assert (row["failures"], row["quarantined_at"]) == (0, None), host_id

        # Inits fast again: once each hold is over, the next activation brings the host up.
        client.clear(fault="init_delay")

        def all_up() -> bool:
            send_ticks(app_module, deps)
            return set(statuses(deps).values()) == {"up"}

        wait_for(all_up, 40, "every host up", interval_s=0.5)
        assert client.overlaps()["count"] == 0
    finally:
        for proc in procs:
            proc.stop()


def test_slow_inits_on_v2_agents_are_asked_about_never_repeated_and_every_host_ends_up(
    sim: Any, servers: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=3, protocol=2)
    hosts = sorted(h["id"] for h in client.fleet()["hosts"])
    client.inject("init_delay", all_hosts=True, seconds=INIT_DELAY_S)
    procs = [start_worker(servers.env(**SLOW), logs, concurrency=2, name=f"slow2-{i}") for i in range(2)]
    try:

        def all_up() -> bool:
            send_ticks(app_module, deps, copies=2)  # duplicate beats
            return set(statuses(deps).values()) == {"up"}

        wait_for(all_up, 40, "every host up", interval_s=0.5)
        # Each init outlived the 1 s init timeout; the activation asked the agent instead of
        # counting a failure or sending another: one init per host, none beside another.
        calls = client.inits()
        assert sorted(c["host_id"] for c in calls if c["outcome"] == "ok") == hosts
        assert client.overlaps()["count"] == 0
        with deps.db.transaction() as conn:
            asked = conn.execute(
                "SELECT object_id, details FROM audit_log WHERE event = 'init_outcome_asked'"
            ).fetchall()
        assert {a["object_id"] for a in asked} == set(hosts)
        assert all("asked the agent, done: ok" in str(a["details"]) for a in asked)
        for host_id in hosts:
            row = host_status(deps, host_id)
            assert (row["init_hold_until"], row["failures"], row["quarantined_at"]) == (None, 0, None)
    finally:
        for proc in procs:
            proc.stop()


KILLED = {**SLOW, "AUTORECOVERY_INIT_TIMEOUT_S": "5", "AUTORECOVERY_INIT_MAX_S": "5"}


def _kill_during_init(
    sim: Any, servers: Any, logs: Path, app_module: Any, deps: Any, protocol: int
) -> tuple[Any, Any]:
    """One host, a slow init, its worker process killed mid-init; return the simulator and worker."""
    client = sim(hosts=1, protocol=protocol)
    client.inject("init_delay", hosts=["h-0001"], seconds=INIT_DELAY_S)
    proc = start_worker(servers.env(**KILLED), logs, concurrency=1, name=f"killed-v{protocol}")
    send_ticks(app_module, deps)
    wait_for(lambda: host_status(deps, "h-0001")["status"] == "initializing", 20, "the init to start")
    wait_for(lambda: len(client.inits("h-0001")) == 1, 10, "the init call")
    [child] = proc.children()
    os.kill(child, signal.SIGKILL)  # the pool process dies mid-init; its message is requeued

    # The redelivery waits for the dead holder's lock (its TTL), then takes over.
    def up() -> bool:
        send_ticks(app_module, deps)
        return bool(host_status(deps, "h-0001")["status"] == "up")

    try:
        wait_for(up, 60, "the takeover", interval_s=0.5)
    except AssertionError:
        proc.stop()
        raise
    return client, proc


def _activations(deps: Any) -> list[tuple[str, str]]:
    with deps.db.transaction() as conn:
        acts = conn.execute("SELECT state, outcome FROM activations").fetchall()
    return [(a["state"], a["outcome"]) for a in acts]


def test_a_worker_killed_during_init_on_a_v1_agent_is_taken_over_once_its_lock_expires(
    sim: Any, servers: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    client, proc = _kill_during_init(sim, servers, logs, app_module, deps, protocol=1)
    try:
        # A v1 agent cannot be asked: the takeover finds the host initializing (the dead holder
        # may have sent its init), holds it by the record for init_max_s (outcome unknown,
        # uncharged), and only a later activation inits again, with a higher fence.
        assert sorted(_activations(deps)) == [("abandoned", "outcome_unknown"), ("done", "up")]
        fences = [c["fence"] for c in client.inits("h-0001")]
        assert len(fences) == 2 and fences[1] > fences[0]
        row = host_status(deps, "h-0001")
        assert (row["failures"], row["quarantined_at"]) == (0, None)
        assert client.overlaps()["count"] == 0
        assert "LockBusyRetry" in proc.log() or "retrying in" in proc.log()
    finally:
        proc.stop()


def test_a_worker_killed_during_init_on_a_v2_agent_is_finished_by_asking_not_by_a_second_init(
    sim: Any, servers: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    client, proc = _kill_during_init(sim, servers, logs, app_module, deps, protocol=2)
    try:
        assert _activations(deps) == [("done", "up")]
        # The init went on on the host after its caller died; the takeover asked how it went.
        assert [c["outcome"] for c in client.inits("h-0001")] == ["ok"]
        assert client.overlaps()["count"] == 0
        with deps.db.transaction() as conn:
            asked = conn.execute(
                "SELECT details FROM audit_log WHERE event = 'init_outcome_asked' AND object_id = 'h-0001'"
            ).fetchall()
        assert asked and "done: ok" in str(asked[-1]["details"])
    finally:
        proc.stop()
