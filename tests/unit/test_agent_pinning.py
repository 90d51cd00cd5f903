"""One agent client per process: names resolved once per TTL, connections kept, addresses pinned.

Real sockets on loopback; the system resolver is replaced (``socket.getaddrinfo``) so that names
can answer what a test needs, as a DNS server would.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web

from autorecovery.adapters.agents import Target
from autorecovery.adapters.agents.http import HttpAgentClient
from models.agent_url import AgentUrlPolicy
from models.errors import AgentUnavailable

_REAL_GETADDRINFO = socket.getaddrinfo


def report(host_id: str) -> dict[str, Any]:
    return {
        "host_id": host_id,
        "reported_at": datetime.now(UTC).isoformat(),
        "kvm": True,
        "version": "4.5.2",
        "cpu_flags": ["vmx"],
        "networks": {"mgmt": True},
        "storage_domains": {"sd-1": True},
        "vms_running": 1,
        "mem_free_mb": 1000,
    }


class Server:
    """An agent on one loopback address: counts the connections it accepted and the requests."""

    def __init__(self) -> None:
        self.connections: set[int] = set()
        self.requests = 0
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        assert request.transport is not None
        self.connections.add(id(request.transport))
        if request.path.endswith("/fence"):
            return web.json_response({"highest": 5})
        host_id = request.path.strip("/").split("/")[0]
        return web.json_response(report(host_id))


class Loop:
    """An event loop thread serving the test's agents."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.runners: list[web.AppRunner] = []
        self.raw: list[asyncio.Server] = []

    def serve(self, server: Server, address: str, port: int = 0) -> int:
        async def start() -> int:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", server.handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, address, port)
            await site.start()
            self.runners.append(runner)
            return int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]

        server.port = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        return server.port

    def count_connections(self, address: str, port: int) -> list[int]:
        """Listen on ``address:port`` and count every connection made to it."""
        seen: list[int] = []

        async def start() -> None:
            def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                seen.append(1)
                writer.close()

            self.raw.append(await asyncio.start_server(accepted, address, port))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        return seen

    def close(self) -> None:
        async def stop() -> None:
            for runner in self.runners:
                await runner.cleanup()
            for raw in self.raw:
                raw.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    served = Loop()
    yield served
    served.close()


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, Callable[[], str]]:
    """Names a test answers itself (name -> a function giving the address); the rest as usual."""
    names: dict[str, Callable[[], str]] = {}
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in names:
            asked.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host](), int(port)))]
        return _REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    names["__asked__"] = lambda: ",".join(asked)  # read by tests: every lookup made, in order
    return names


def lookups(dns: dict[str, Callable[[], str]]) -> list[str]:
    text = dns["__asked__"]()
    return text.split(",") if text else []


def test_a_rebinding_name_never_gets_a_connection_to_a_forbidden_address(
    loop: Loop, dns: dict[str, Callable[[], str]]
) -> None:
    allowed = Server()
    port = loop.serve(allowed, "127.0.0.1")
    forbidden = loop.count_connections("127.0.0.2", port)
    answers = iter(["127.0.0.1"])
    dns["rebind.test"] = lambda: next(answers, "127.0.0.2")  # allowed once, then elsewhere
    policy = AgentUrlPolicy.build(["127.0.0.1/32"], [])
    client = HttpAgentClient(
        report_timeout_s=2.0, init_timeout_s=2.0, concurrency=4, retries=0, url_policy=policy, dns_ttl_s=0.5
    )
    target = Target("h-1", f"http://rebind.test:{port}/h-1")
    try:
        # Within the TTL every call connects to the address that was checked.
        assert client.raise_fence(target, 5) == 5
        assert client.get_report(target, datetime.now(UTC)).agent_reachable
        assert client.pull_reports([target], datetime.now(UTC))[0].agent_reachable
        assert allowed.requests == 3
        time.sleep(0.6)  # the TTL is over: the name now answers the forbidden address
        with pytest.raises(AgentUnavailable, match="outside AUTORECOVERY_AGENT_NETWORKS"):
            client.raise_fence(target, 6)
        # A pull may reuse the connection kept alive to the checked address; a new one is refused.
        pulled = client.pull_reports([target], datetime.now(UTC))[0]
    finally:
        client.close()
    assert pulled.agent_reachable or "outside AUTORECOVERY_AGENT_NETWORKS" in (pulled.error or "")
    assert forbidden == []  # never a connection to the forbidden address


def test_batches_share_connections_and_resolve_a_name_once_per_ttl(
    loop: Loop, dns: dict[str, Callable[[], str]]
) -> None:
    server = Server()
    port = loop.serve(server, "127.0.0.1")
    dns["agents.test"] = lambda: "127.0.0.1"
    client = HttpAgentClient(report_timeout_s=2.0, init_timeout_s=2.0, concurrency=5, retries=0, dns_ttl_s=60)
    targets = [Target(f"h-{i}", f"http://agents.test:{port}/h-{i}") for i in range(40)]
    try:
        for _ in range(4):  # four batches, as four ticks of one worker process
            reports = client.pull_reports(targets, datetime.now(UTC))
            assert all(r.agent_reachable for r in reports), [r.error for r in reports if r.error]
        started = client.session.started
    finally:
        client.close()
    assert server.requests == 160
    assert len(server.connections) <= 5  # kept alive across batches, bounded by the concurrency
    assert lookups(dns) == ["agents.test"]  # one resolution for every host and batch
    assert started == 1  # one event loop for the client's life


def test_the_client_starts_nothing_until_used() -> None:
    client = HttpAgentClient(report_timeout_s=1.0, init_timeout_s=1.0, concurrency=2, retries=0)
    threads = {t.name for t in threading.enumerate()}
    client.close()
    assert client.session.started == 0 and "agent-http" not in threads
