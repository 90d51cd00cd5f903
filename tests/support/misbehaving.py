"""Agents that misbehave, served by one aiohttp server on loopback: ``/{kind}/{host_id}/report``.

Each kind is one way an agent can answer badly (deep, huge, a gzip bomb, a drip, a redirect,
HTML, invalid UTF-8, an over-long integer, another host's id, a date ahead); ``good`` answers a
clean report and correct v2 answers (init, status, fence, connect); a wedge (``wedge-max``,
``wedge-2e80``, ``wedge-plus``) reports clean and answers every init ``stale_fence`` with a
highest fence the product never issued (2⁶³−1, 2⁸⁰, one above the fence sent) until its host
is ``restored`` (then it accepts as a fresh agent state would); any other kind answers every
route the same bad way. Every request's ``Authorization`` header is recorded.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

MiB = 1024 * 1024
DEEP = 200_000
HUGE_BYTES = 200 * MiB
BOMB_INFLATED = 256 * MiB


def report(host_id: str, at: datetime | None = None, **changes: Any) -> dict[str, Any]:
    """A clean v2 report of ``host_id`` (the simulator's default cluster needs nothing)."""
    body: dict[str, Any] = {
        "host_id": host_id,
        "reported_at": (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "protocol": 2,
        "init": None,
        "kvm": True,
        "version": "4.5.2",
        "cpu_flags": ["vmx", "sse4_2"],
        "networks": {"ovirtmgmt": True},
        "storage_domains": {},
        "vms_running": 0,
        "mem_free_mb": 64000,
    }
    body.update(changes)
    return body


def _gzip_bomb() -> bytes:
    """256 MiB of zeros gzipped (about 255 KB), built without holding the 256 MiB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(MiB)
    parts = [packer.compress(zeros) for _ in range(BOMB_INFLATED // MiB)]
    parts.append(packer.flush())
    return b"".join(parts)


class MisbehavingAgents:
    """The server; ``url(kind, host_id)`` is an agent URL to register."""

    def __init__(
        self, redirect_to: Callable[[str], str] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self._tls = tls
        self.auth: list[tuple[str, str | None]] = []
        #: Wedge hosts whose agent state an admin restored: they accept fences again.
        self.restored: set[str] = set()
        #: Fences each wedge host accepted (inits and pushes), in order.
        self.accepted: dict[str, list[tuple[str, int]]] = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self._bomb = _gzip_bomb()
        self._redirect_to = redirect_to
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, kind: str, host_id: str) -> str:
        if self._tls is not None:
            return f"https://localhost:{self.port}/{kind}/{host_id}"
        return f"http://127.0.0.1:{self.port}/{kind}/{host_id}"

    def start(self) -> MisbehavingAgents:
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("misbehaving agents did not start")
        return self

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/{kind}/{host}/report", self._report)
        app.router.add_post("/{kind}/{host}/init", self._ok)
        app.router.add_get("/{kind}/{host}/init/{act}", self._status)
        app.router.add_post("/{kind}/{host}/fence", self._fence)
        app.router.add_post("/{kind}/{host}/storage-domains/{sd}/connect", self._ok)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._tls)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.auth.append((request.path, request.headers.get("Authorization")))
        response: web.StreamResponse = await handler(request)
        return response

    async def _wedge(self, request: web.Request, route: str) -> web.StreamResponse:
        """A wedge: claim a fence never issued, until restored (then a fresh state's answers)."""
        kind, host = request.match_info["kind"], request.match_info["host"]
        fence = int((await request.json())["fence"])
        if host in self.restored:
            seen = self.accepted.setdefault(host, [])
            highest = max([f for _, f in seen], default=0)
            if route == "init" and fence < highest:
                return web.json_response({"error": "stale_fence", "highest": highest}, status=409)
            seen.append((route, fence))
            return web.json_response({"ok": True} if route == "init" else {"highest": max(highest, fence)})
        claim = {"wedge-max": 2**63 - 1, "wedge-2e80": 2**80}.get(kind, fence + 1)
        if route == "fence":
            return web.json_response({"highest": claim})
        return web.json_response({"error": "stale_fence", "highest": claim}, status=409)

    async def _ok(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["kind"].startswith("wedge"):
            return await self._wedge(request, "init")
        if request.match_info["kind"] != "good":  # a misbehaving agent answers every call so
            return await self._report(request)
        return web.json_response({"ok": True})

    async def _fence(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["kind"].startswith("wedge"):
            return await self._wedge(request, "fence")
        if request.match_info["kind"] != "good":
            return await self._report(request)
        return web.json_response({"highest": 9})

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["kind"] != "good":
            return await self._report(request)
        act = request.match_info["act"]
        return web.json_response({"activation_id": act, "fence": 3, "status": "done", "ok": True})

    async def _report(self, request: web.Request) -> web.StreamResponse:
        kind, host = request.match_info["kind"], request.match_info["host"]
        now = datetime.now(UTC)
        if kind == "good" or kind.startswith("wedge"):
            return web.json_response(report(host))
        if kind == "slow":  # a good report after a pause, counting requests served at once
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            await asyncio.sleep(0.2)
            self.in_flight -= 1
            return web.json_response(report(host))
        if kind == "deep":
            return web.Response(body=b"[" * DEEP + b"]" * DEEP, content_type="application/json")
        if kind == "html":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        if kind == "badutf8":
            return web.Response(body=json.dumps(report(host)).encode().replace(b"4.5.2", b"4.5\xff"))
        if kind == "longint":
            text = json.dumps(report(host)).replace('"vms_running": 0', '"vms_running": 1' + "0" * 5000)
            return web.Response(text=text, content_type="application/json")
        if kind == "wrongid":
            return web.json_response(report("someone-else"))
        if kind == "future":
            return web.json_response(report(host, datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)))
        if kind == "ahead":
            return web.json_response(report(host, now + timedelta(hours=1)))
        if kind == "redirect":
            where = self._redirect_to(host) if self._redirect_to else f"http://127.0.0.1:9/{host}/report"
            raise web.HTTPFound(where)
        if kind == "bomb":
            return web.Response(
                body=self._bomb, headers={"Content-Encoding": "gzip"}, content_type="application/json"
            )
        return await self._stream(request, kind)

    async def _stream(self, request: web.Request, kind: str) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)  # chunked, no length: only the read cap stops it
        async for chunk in _chunks(kind):
            await response.write(chunk)
        await response.write_eof()
        return response


async def _chunks(kind: str) -> AsyncIterator[bytes]:
    if kind == "huge":  # a valid start, then 200 MB of padding
        yield b'{"padding": "'
        for _ in range(HUGE_BYTES // MiB - 1):
            yield b"x" * MiB
        yield b'"}'
    elif kind == "drip":
        for _ in range(600):
            yield b" "
            await asyncio.sleep(0.1)
    else:
        raise web.HTTPNotFound()
