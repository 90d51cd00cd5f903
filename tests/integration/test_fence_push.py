"""An activation taken from its holder raises the agent's fence over HTTP (``POST /fence``), and
a later housekeeping run retries while the agent does not answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from autorecovery.services.fleet import HostSpec
from models.domain import Cluster
from tests.integration.conftest import host_status, housekeeping

HOST = "f-1"


class Agent(ThreadingHTTPServer):
    """A v2 agent of one host that answers reports, inits and fences, or nothing while down."""

    down = True
    calls: list[tuple[str, dict[str, Any]]]


class Handler(BaseHTTPRequestHandler):
    server: Agent

    def log_message(self, *args: Any) -> None:
        """Keep the test's output quiet."""

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.server.down:
            return self._answer(503, "down")
        self._answer(200, report())

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.server.down:
            return self._answer(503, "down")
        self.server.calls.append((self.path, body))
        if self.path == "/fence":
            return self._answer(200, {"highest": body["fence"]})
        self._answer(200, {"ok": True})


def report() -> dict[str, Any]:
    return {
        "host_id": HOST,
        "reported_at": datetime.now(UTC).isoformat(),
        "protocol": 2,
        "init": None,
        "kvm": True,
        "version": "4.5.2",
        "cpu_flags": ["vmx"],
        "networks": {},
        "storage_domains": {},
        "vms_running": 0,
        "mem_free_mb": 1024,
    }


@pytest.fixture
def agent() -> Iterator[Agent]:
    server = Agent(("127.0.0.1", 0), Handler)
    server.calls = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_reaped_activation_raises_the_agents_fence_once_it_answers(
    agent: Agent, worker: Any, app_module: Any, deps: Any, fleet_service: Any
) -> None:
    fleet_service.register_cluster(Cluster("c-f"), "test")
    fleet_service.register_hosts([HostSpec(HOST, "c-f", f"http://127.0.0.1:{agent.server_port}")], "test")
    with deps.db.transaction() as conn:  # a holder paused an hour into its activation
        conn.execute("UPDATE hosts SET fence = 4, status = 'initializing' WHERE id = %s", (HOST,))
        conn.execute(
            "INSERT INTO activations (id, host_id, trigger, actor, state, fence, queued_at, started_at)"
            " VALUES ('paused', %s, 'auto', 'auto', 'sending', 4, now() - interval '1 hour',"
            " now() - interval '1 hour')",
            (HOST,),
        )
    first = housekeeping(app_module, deps)
    assert (first["reaped"], first["fences_pushed"], first["fences_failed"]) == (1, 0, 1)
    row = host_status(deps, HOST)
    assert (row["fence"], row["agent_fence_pending"]) == (5, True)

    agent.down = False
    time.sleep(1.1)  # its backoff: one tick interval after the first failure
    second = housekeeping(app_module, deps)
    assert (second["fences_pushed"], second["fences_failed"]) == (1, 0)
    assert agent.calls[0] == ("/fence", {"fence": 5})  # before any new init
    assert host_status(deps, HOST)["agent_fence_pending"] is False
    third = housekeeping(app_module, deps)
    assert third["fences_pushed"] == 0
    assert [c for c in agent.calls if c[0] == "/fence"] == [("/fence", {"fence": 5})]
