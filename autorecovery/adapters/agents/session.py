"""One HTTP client per process: an event loop thread, its aiohttp sessions and the pinning resolver.

A worker process runs many batches and activations; each used to build its own session,
connector and resolver, so every tick opened a connection and resolved a name per host. Here
they live as long as the process: connections are kept alive between ticks and a name is
resolved (and its addresses checked against the URL policy) once per TTL. Nothing starts until
the first call, so a Celery parent that forks its workers never owns the loop thread.

Two connectors share the resolver: pulls reuse kept-alive connections (a GET that meets a
connection the agent closed is retried by aiohttp); single calls (init, fence, status) each get
a fresh connection, so a POST never goes out on a connection the agent may have just closed,
which would leave its outcome unknown though it never arrived.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import ssl
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver

log = logging.getLogger(__name__)

T = TypeVar("T")


class AgentSession:
    """A lazily started event loop thread with the pull and call sessions of one process."""

    def __init__(
        self,
        *,
        resolver: AbstractResolver,
        ssl_context: ssl.SSLContext,
        concurrency: int,
        keepalive_s: float,
        headers: dict[str, str],
    ) -> None:
        self._resolver = resolver
        self._ssl = ssl_context
        self._concurrency = concurrency
        self._keepalive_s = keepalive_s
        self._headers = headers
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pull: aiohttp.ClientSession | None = None
        self._call: aiohttp.ClientSession | None = None
        self.started = 0  # how many times a loop was started (a test sees it stays one)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread and wait for it; cancelled if the caller is interrupted."""
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result()
        except BaseException:  # a Celery time limit or ^C in the waiting thread: stop the work too
            future.cancel()
            raise

    @property
    def pull(self) -> aiohttp.ClientSession:
        """The keep-alive session for report pulls (only on the loop thread)."""
        if self._pull is None:
            self._pull = self._session(keepalive_timeout=self._keepalive_s)
        return self._pull

    @property
    def call(self) -> aiohttp.ClientSession:
        """The session for single calls: a fresh connection each (only on the loop thread)."""
        if self._call is None:
            self._call = self._session(force_close=True)
        return self._call

    def _session(self, **keep: Any) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._concurrency,
            ssl=self._ssl,
            resolver=self._resolver,
            use_dns_cache=False,  # the resolver caches, after checking what it resolved
            **keep,
        )
        return aiohttp.ClientSession(connector=connector, headers=self._headers, auto_decompress=False)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                thread = threading.Thread(target=serve, name="agent-http", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
                self._pull = self._call = None
                self.started += 1
            return self._loop

    def close(self) -> None:
        """Close both sessions and the resolver, then stop the loop thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._aclose(), loop).result(timeout=5.0)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            log.warning("agent HTTP client did not close cleanly: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5.0)
        if not thread.is_alive():
            loop.close()

    async def _aclose(self) -> None:
        for session in (self._pull, self._call):
            if session is not None:
                await session.close()
        self._pull = self._call = None
        await self._resolver.close()
