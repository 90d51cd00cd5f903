"""A queued activation whose broker message was lost is sent again, long before the queued TTL."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import host_status, send_ticks
from tests.support.processes import start_worker, wait_for
from tests.support.servers import Servers

HOST = "h-0001"


def queued_activation(deps: Any) -> str | None:
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT id FROM activations WHERE host_id = %s AND state = 'queued'", (HOST,)
        ).fetchone()
    return None if row is None else str(row["id"])


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
        activation_id = queued_activation(deps)
        assert activation_id is not None
        with app_module.app.connection_for_write() as conn:
            assert conn.default_channel.queue_purge(app_module.ACTIVATION_QUEUE) == 1
        lost_at = time.monotonic()
        activator = start_worker(servers.env(), logs, concurrency=1, queues="activation", name="activator")

        def up() -> bool:
            send_ticks(app_module, deps)
            return bool(host_status(deps, HOST)["status"] == "up")

        wait_for(up, 30, f"{HOST} to come up")
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
