"""Run the API with uvicorn, bounded: header size, header-read, body-read and keep-alive timeouts,
connections at once, and an access log that never shows a query string.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from api.app import create_app
from api.push import PUSH_PATH
from autorecovery.settings import Settings, load_settings

log = logging.getLogger(__name__)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (llhttp, in C) with a limit and a clock on each request head.

    ``max_head_bytes``: a request head (request line and headers) larger than this is answered
    431 and the connection closed, counted as it arrives, so an 8 MB header is never buffered.
    ``header_timeout_s``: a connection whose request head is not complete within this time is
    closed; uvicorn's keep-alive timeout starts only after a response and any byte cancels it,
    so a client dripping a header line every few seconds would otherwise hold it forever.
    ``body_timeout_s``: a request whose body is not complete within this time after its head is
    closed (a slow upload would hold a worker slot).
    """

    header_timeout_s: float = 10.0
    max_head_bytes: int = 64 * 1024
    #: A request's body must be in within this after its head (a slow upload holds a worker slot).
    body_timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._in_head = True
        self._refused = False
        self._boundaries = 0
        self._head_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        """Count the bytes of a request head as they come; start its clock when one begins."""
        if self._refused:
            return
        self._boundaries = 0
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        if self._boundaries:  # a head or body ended in this piece: what follows is not counted
            self._arm_header_timer()
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self._refuse_head()
            return
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        """A request starts: its head is counted from here."""
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        """The head is in: stop its clock and start the body's (until the request is complete)."""
        self._in_head = False
        self._boundaries += 1
        self._head_bytes = 0
        self._disarm_header_timer()
        self._arm_body_timer()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.max_head_bytes:
            self._refuse_head()
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Pass a body on, unless its head was refused."""
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """The next bytes, if any, start the next request's head."""
        if self._refused:
            return
        self._disarm_body_timer()
        super().on_message_complete()
        self._in_head = True
        self._boundaries += 1

    def on_response_complete(self) -> None:
        """After a response, the keep-alive timeout guards an idle connection, not this clock."""
        super().on_response_complete()
        self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the clocks."""
        self._disarm_header_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def _refuse_head(self) -> None:
        self._refused = True
        self._disarm_header_timer()
        self._disarm_body_timer()
        body = b'{"error":"too_large","field":"headers","message":"headers: too large"}'
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
        )
        self.transport.close()

    def _arm_header_timer(self) -> None:
        if getattr(self, "_header_timer", None) is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _arm_body_timer(self) -> None:
        if getattr(self, "_body_timer", None) is None:
            self._body_timer = self.loop.call_later(self.body_timeout_s, self._body_timeout)

    def _disarm_body_timer(self) -> None:
        timer = getattr(self, "_body_timer", None)
        if timer is not None:
            timer.cancel()
            self._body_timer = None

    def _body_timeout(self) -> None:
        self._body_timer = None  # disarmed when the request is complete: it is not
        if not self.transport.is_closing():
            log.info(
                "closing a connection from %s: request body not in within %.0fs",
                self.client,
                self.body_timeout_s,
            )
            self.transport.close()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._in_head and not self.transport.is_closing():
            log.info(
                "closing a connection from %s: no request head within %.0fs",
                self.client,
                self.header_timeout_s,
            )
            self.transport.close()


class RedactQuery(logging.Filter):
    """Drop the query string from uvicorn's access log lines (it could carry a secret)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the path argument (client, method, path, version, status) without its query."""
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?[query redacted]", *args[3:])
        return True


class QuietPushes(logging.Filter):
    """Leave accepted single-report pushes out of uvicorn's access log.

    Per-host pushers send one each per tick: with thousands of hosts, their lines would bury
    every other request, and cost the API about a fifth of a push's CPU. Refused pushes (4xx,
    5xx) are still logged; an accepted one shows in its host's report (``hosts show``).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """False for ``POST /api/v1/hosts/{id}/report`` answered below 400."""
        args = record.args
        if not isinstance(args, tuple) or len(args) < 5 or args[1] != "POST":
            return True
        status, path = args[4], args[2]
        accepted = isinstance(status, int) and status < 400
        return not (accepted and isinstance(path, str) and PUSH_PATH.match(path.split("?", 1)[0]) is not None)


def uvicorn_config(settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the API, from the settings."""
    protocol = type(
        "BoundedProtocol",
        (BoundedHttpToolsProtocol,),
        {
            "header_timeout_s": settings.api_header_timeout_s,
            "max_head_bytes": settings.api_max_header_bytes,
            "body_timeout_s": settings.api_body_timeout_s,
        },
    )
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "http": protocol,
        "timeout_keep_alive": settings.api_keep_alive_s,
        "limit_concurrency": settings.api_max_connections,
        "server_header": False,
        "log_level": "info",
    }
    options.update(overrides)
    return uvicorn.Config(create_app(settings), **options)


def serve(settings: Settings | None = None, **uvicorn_options: Any) -> None:
    """Run the API on ``api_host:api_port`` until stopped.

    Raises:
        InvalidInput: naming the variable, before anything binds, when the tokens are wrong.
    """
    config = uvicorn_config(settings or load_settings(), **uvicorn_options)
    # uvicorn configured its loggers in Config(); the filter goes on after that.
    access = logging.getLogger("uvicorn.access")
    access.addFilter(QuietPushes())
    access.addFilter(RedactQuery())
    uvicorn.Server(config).run()
