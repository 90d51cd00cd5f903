"""The HTTP API as its own process (``python -m api``) on a free port, and helpers to call it.

Test modules load this as a plugin (``pytest_plugins``) for its fixtures and import its helpers
too, so it opts out of assertion rewriting: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import secrets
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg import sql

from autorecovery.services.fleet import HostSpec
from models.domain import Cluster
from tests.support.processes import Proc, spawn, wait_for
from tests.support.servers import Servers

#: Token names by role: two admins (to tell actors apart in the audit log), a viewer, and a
#: reporter bound to two hosts.
ADMINS = ("alice", "bob")
VIEWER = "vic"
REPORTER = "rita"
REPORTER_HOSTS = ("h-0001", "h-0002")
TABLES = ("clusters", "hosts", "reports", "activations", "audit_log")


def free_port() -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiServer:
    """A running API process, its URL and the tokens it accepts."""

    base_url: str
    proc: Proc
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, who: str | None = None, token: str | None = None) -> httpx.Client:
        """Return a client authenticated as token name ``who`` (or with ``token``, or none)."""
        secret = token if token is not None else (self.tokens[who] if who else None)
        headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60.0)

    def stop(self) -> None:
        """Stop the process."""
        self.proc.stop()


def make_tokens() -> dict[str, str]:
    """Fresh random tokens for this session."""
    return {name: secrets.token_urlsafe(24) for name in (*ADMINS, VIEWER, REPORTER)}


def token_setting(tokens: dict[str, str]) -> str:
    """Render tokens as AUTORECOVERY_API_TOKENS."""
    roles = {VIEWER: "viewer", REPORTER: "reporter"}
    bound = {REPORTER: ":" + "|".join(REPORTER_HOSTS)}
    return ",".join(
        f"{name}:{roles.get(name, 'admin')}:{token}{bound.get(name, '')}" for name, token in tokens.items()
    )


def start_api(
    servers: Servers, logs: Path, tokens: dict[str, str], name: str = "api", **env: str
) -> ApiServer:
    """Start ``python -m api`` with the test servers' environment; wait until it answers."""
    port = free_port()
    environ = servers.env(
        AUTORECOVERY_API_TOKENS=token_setting(tokens),
        AUTORECOVERY_API_HOST="127.0.0.1",
        AUTORECOVERY_API_PORT=str(port),
        **env,
    )
    proc = spawn([sys.executable, "-m", "api"], environ, logs, name)
    server = ApiServer(f"http://127.0.0.1:{port}", proc, tokens)

    def up() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{name} exited early:\n{proc.log()[-4000:]}")
        try:
            return httpx.get(f"{server.base_url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 30, f"the {name} process to answer")
    return server


@pytest.fixture(scope="session")
def api(servers: Servers, logs: Path) -> Iterator[ApiServer]:
    """The API process every API test talks to, on the session's servers and broker."""
    server = start_api(servers, logs, make_tokens())
    yield server
    server.stop()
    assert "Traceback" not in server.proc.log(), server.proc.log()[-6000:]


def snapshot(deps: Any) -> dict[str, list[str]]:
    """Every row of the product's tables, to show that a refused request wrote nothing."""
    found: dict[str, list[str]] = {}
    with deps.db.transaction() as conn:
        for table in TABLES:
            query = sql.SQL("SELECT t::text AS row FROM {} t").format(sql.Identifier(table))
            rows = conn.execute(query).fetchall()
            found[table] = sorted(r["row"] for r in rows)
    return found


def audit(deps: Any, **where: str) -> list[dict[str, Any]]:
    """Audit entries matching column = value filters, oldest first."""
    with deps.db.transaction() as conn:
        rows = conn.execute("SELECT * FROM audit_log ORDER BY id").fetchall()
    return [dict(r) for r in rows if all(r[k] == v for k, v in where.items())]


DEAD_AGENT = "http://127.0.0.1:9/agents/{}"


def good_report(host_id: str, /, **changes: Any) -> dict[str, Any]:
    """A clean report (agent protocol v1) dated now."""
    body: dict[str, Any] = {
        "host_id": host_id,
        "reported_at": datetime.now(UTC).isoformat(),
        "kvm": True,
        "version": "4.5.2",
        "cpu_flags": ["vmx"],
        "networks": {"mgmt": True},
        "storage_domains": {"sd-1": True},
        "vms_running": 3,
        "mem_free_mb": 12000,
    }
    body.update(changes)
    return body


@pytest.fixture
def fleet(fleet_service: Any) -> Any:
    """Cluster c-1 and hosts h-0001..h-0003 whose agents never answer (no tick runs here)."""
    fleet_service.register_cluster(
        Cluster("c-1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.0", frozenset({"vmx"})), "test"
    )
    fleet_service.register_hosts(
        [HostSpec(f"h-000{i}", "c-1", DEAD_AGENT.format(f"h-000{i}")) for i in (1, 2, 3)], "test"
    )
    return fleet_service
