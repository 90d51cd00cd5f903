"""A queued activation whose broker message was lost is sent again, long before the queued TTL."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import host_status, send_ticks, statuses
from tests.support.processes import start_worker, wait_for
from tests.support.servers import Servers

HOST = "h-0001"


def activation_in(deps: Any, state: str) -> str | None:
    """The id of HOST's activation in ``state``, if any."""
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT id FROM activations WHERE host_id = %s AND state = %s", (HOST, state)
        ).fetchone()
    return None if row is None else str(row["id"])


def ticked_up(app_module: Any, deps: Any) -> bool:
    """Send a tick; True once HOST is up."""
    send_ticks(app_module, deps)
    return bool(host_status(deps, HOST)["status"] == "up")


def test_a_lost_activation_message_is_sent_again_and_the_host_comes_up(
    sim: Any, servers: Servers, logs: Path, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=1)
    # The tick runs on a worker that does not consume activations, so the message waits in the
    # broker until the test loses it, as a Redis restart without persistence would.
    ticker = start_worker(
        servers.env(AUTORECOVERY_RESEND_QUEUED_AFTER_S="2"),
        logs,
        concurrency=1,
        queues="monitoring",
        name="ticker",
    )
    activator = None
    try:
        send_ticks(app_module, deps)
        activation_id = activation_in(deps, "queued")
        assert activation_id is not None
        with app_module.app.connection_for_write() as conn:
            assert conn.default_channel.queue_purge(app_module.ACTIVATION_QUEUE) == 1
        lost_at = time.monotonic()
        activator = start_worker(servers.env(), logs, concurrency=1, queues="activation", name="activator")
        wait_for(lambda: ticked_up(app_module, deps), 30, f"{HOST} to come up")
        took_s = time.monotonic() - lost_at
    finally:
        for proc in (ticker, activator):
            if proc is not None:
                proc.stop()
    queued_ttl_s = float(servers.env()["AUTORECOVERY_ACTIVATION_QUEUED_TTL_S"])
    assert took_s < queued_ttl_s / 2, f"{took_s:.1f}s: waited for the queued TTL ({queued_ttl_s}s)"
    with deps.db.transaction() as conn:
        act = conn.execute("SELECT * FROM activations WHERE id = %s", (activation_id,)).fetchone()
        resent = conn.execute(
            "SELECT details FROM audit_log WHERE event = 'activation_resent' AND object_id = %s", (HOST,)
        ).fetchall()
    assert (act["state"], act["outcome"]) == ("done", "up")  # the same activation, re-sent
    assert act["sends"] >= 2 and resent and resent[0]["details"]["activation_id"] == activation_id
    assert [c["activation_id"] for c in client.inits(HOST)] == [activation_id]  # one init, no twin


def _runs_per_activation(log: str) -> dict[str, int]:
    """How many times each activation task ran to an end in a worker's log."""
    ended = re.findall(r"Task autorecovery\.init_vds_on_up\[([0-9a-f-]+)\] (?:succeeded|raised|retry)", log)
    return {task_id: ended.count(task_id) for task_id in set(ended)}


def test_a_deep_queue_is_not_re_sent_into_duplicate_runs(
    sim: Any, servers: Servers, logs: Path, app_module: Any, deps: Any
) -> None:
    hosts = 16
    client = sim(hosts=hosts)
    client.inject("init_delay", all_hosts=True, seconds=0.5)
    # One process for 16 inits of 0.5 s: the last message waits about 8 s in the broker, twice
    # the re-send delay.
    env = servers.env(AUTORECOVERY_RESEND_QUEUED_AFTER_S="4")
    ticker = start_worker(env, logs, concurrency=1, queues="monitoring", name="deep-ticker")
    activator = start_worker(env, logs, concurrency=1, queues="activation", name="deep-activator")
    try:

        def all_up() -> bool:
            send_ticks(app_module, deps)
            return set(statuses(deps).values()) == {"up"}

        wait_for(all_up, 90, "the fleet up")
        time.sleep(2.0)  # a re-sent message still queued would run now
        runs = _runs_per_activation(activator.log())
    finally:
        ticker.stop()
        activator.stop()
    with deps.db.transaction() as conn:
        resent = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE event = 'activation_resent'"
        ).fetchone()
    print(f"{resent['n']} re-sends, {len(runs)} activation runs")
    assert {task_id: n for task_id, n in runs.items() if n > 1} == {}
    inits = [c["activation_id"] for c in client.inits()]
    assert len(inits) == len(set(inits)) >= hosts


def test_a_lost_check_message_is_sent_again_and_the_host_comes_up_before_its_deadline(
    sim: Any, servers: Servers, logs: Path, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=1)
    client.inject("init_delay", hosts=[HOST], seconds=3)  # the init runs while its checks are lost
    # A check step is re-sent once none can still run: poll max 1 s + message life 2 s + the
    # step's hard limit 6 s + 2 s; the init's deadline (30 s) is far beyond.
    env = servers.env(
        AUTORECOVERY_RESEND_QUEUED_AFTER_S="2",
        AUTORECOVERY_INIT_POLL_MAX_S="1",
        AUTORECOVERY_INIT_MAX_S="30",
    )
    ticker = start_worker(env, logs, concurrency=1, queues="monitoring", name="check-ticker")
    activator = start_worker(env, logs, concurrency=1, queues="activation", name="check-activator")
    replacement = None
    try:
        send_ticks(app_module, deps)
        wait_for(lambda: activation_in(deps, "sent") is not None, 20, "the init sent")
        activation_id = activation_in(deps, "sent")
        # The worker holding the next check dies with it (its message comes back only after the
        # broker's visibility timeout), and whatever is still queued is lost with the broker.
        os.killpg(activator.popen.pid, signal.SIGKILL)
        activator.popen.wait(10)
        with app_module.app.connection_for_write() as conn:
            conn.default_channel.queue_purge(app_module.ACTIVATION_QUEUE)
        lost_at = time.monotonic()
        replacement = start_worker(env, logs, concurrency=1, queues="activation", name="check-replacement")
        wait_for(lambda: ticked_up(app_module, deps), 40, f"{HOST} to come up")
        took_s = time.monotonic() - lost_at
    finally:
        for proc in (ticker, activator, replacement):
            if proc is not None:
                proc.stop()
    assert took_s < 30, f"{took_s:.1f}s: waited for the init's deadline, not a re-sent check"
    with deps.db.transaction() as conn:
        act = conn.execute("SELECT * FROM activations WHERE id = %s", (activation_id,)).fetchone()
        resent = conn.execute(
            "SELECT details FROM audit_log WHERE event = 'activation_check_resent' AND object_id = %s",
            (HOST,),
        ).fetchall()
    assert (act["state"], act["outcome"]) == ("done", "up")  # the same one, closed by the re-sent check
    assert [r["details"]["activation_id"] for r in resent] == [activation_id]
    assert [c["activation_id"] for c in client.inits(HOST)] == [activation_id]  # one init, no twin
