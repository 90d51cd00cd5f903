"""The single-report push as a pure ASGI handler: the route per-host pushers call every tick.

``POST /api/v1/hosts/{host_id}/report`` is the API's hottest route (one call per host per tick).
Through FastAPI it costs routing, dependency resolution and two middleware layers on top of the
work (decode, one statement); here it costs the work. It runs inside the ``Guard`` (the caller
is authenticated and allowed before a byte of the body is read) and answers exactly what the
FastAPI route answers, which stays declared for the OpenAPI schema and takes every request this
handler does not: an id the route's pattern refuses, a body without a length.
"""

from __future__ import annotations

import logging
import re

from anyio import to_thread
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors
from api.guard import PRINCIPAL_SCOPE_KEY
from api.schemas.common import ID_PATTERN

log = logging.getLogger(__name__)

PUSH_PATH = re.compile(r"^/api/v1/hosts/([^/]+)/report$")
_ID = re.compile(ID_PATTERN)


class ReportPush:
    """Serve single-report pushes directly; pass everything else on to ``app``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        host_id = self._host_id(scope)
        if host_id is None:
            await self.app(scope, receive, send)
            return
        response = await self._push(scope, receive, host_id)
        if response is not None:
            await response(scope, receive, send)

    def _host_id(self, scope: Scope) -> str | None:
        """The host of a push this handler serves, else None (FastAPI serves it)."""
        if scope["type"] != "http" or scope["method"] != "POST" or PRINCIPAL_SCOPE_KEY not in scope:
            return None
        match = PUSH_PATH.match(scope["path"])
        if match is None or not _ID.match(match.group(1)):
            return None
        if not any(name == b"content-length" for name, _ in scope["headers"]):
            return None  # chunked: FastAPI's body limit counts it as it comes
        return match.group(1)

    async def _push(self, scope: Scope, receive: Receive, host_id: str) -> JSONResponse | None:
        declared = _declared_length(scope)
        if declared is None or declared > self.max_bytes:
            return _too_large(self.max_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return _too_large(self.max_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        services = getattr(scope["app"].state, "services", None)
        if services is None:
            return errors.error_response(
                503, "starting", "the API is starting or stopping", headers={"Retry-After": "1"}
            )
        actor = scope[PRINCIPAL_SCOPE_KEY].name
        try:
            report, stored = await to_thread.run_sync(
                services.container.fleet.receive_report, host_id, b"".join(chunks), actor
            )
        except Exception as exc:  # noqa: BLE001 - mapped as the app's handlers map it
            mapped = errors.from_domain(exc)
            if mapped.status == 503:
                log.warning("POST %s: %s", scope["path"], exc)
            elif mapped.status == 500:
                log.error("POST %s failed", scope["path"], exc_info=exc)
            return mapped.response()
        return JSONResponse(
            {"host_id": host_id, "reported_at": report.reported_at.isoformat(), "stored": stored}
        )


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _too_large(limit: int) -> JSONResponse:
    """The 413 FastAPI's route answers (closing: the client may still be sending)."""
    return errors.error_response(
        413, "too_large", f"body: must be at most {limit} bytes", "body", {"connection": "close"}
    )
