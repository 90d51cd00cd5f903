"""Run the API with uvicorn, bounded: header size, header-read, body-read and keep-alive timeouts,
connections at once, and an access log that never shows a query string.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.app import create_app
from autorecovery.settings import Settings, load_settings

log = logging.getLogger(__name__)


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is not in within a time.

    uvicorn's keep-alive timeout starts only after a response and any byte cancels it, so a
    client that drips a header line every few seconds would hold the connection forever.
    """

    header_timeout_s: float = 10.0
    #: A request's body must be in within this after its head (a slow upload holds a worker slot).
    body_timeout_s: float = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the clock for the first request's head."""
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        """Stop the clock once a request's head is in; start it again for the next request."""
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._arm_header_timer()
        else:
            self._disarm_header_timer()
        if self.conn.their_state is h11.SEND_BODY:
            self._arm_body_timer()
        else:
            self._disarm_body_timer()

    def on_response_complete(self) -> None:
        """After a response, the keep-alive timeout guards an idle connection, not this clock."""
        super().on_response_complete()
        self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the clocks."""
        self._disarm_header_timer()
        self._disarm_body_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
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
        self._body_timer = None
        if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            log.info(
                "closing a connection from %s: request body not in within %.0fs",
                self.client,
                self.body_timeout_s,
            )
            self.transport.close()

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
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


def uvicorn_config(settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration of the API, from the settings."""
    protocol = type(
        "BoundedH11Protocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": settings.api_header_timeout_s, "body_timeout_s": settings.api_body_timeout_s},
    )
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "http": protocol,
        "h11_max_incomplete_event_size": settings.api_max_header_bytes,
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
    logging.getLogger("uvicorn.access").addFilter(RedactQuery())
    uvicorn.Server(config).run()
