"""The agent's HTTP app (FastAPI): agent protocol v2 for the one host it runs on.

Routes (every one needs ``Authorization: Bearer <token>``, else 401 ``{"error": "unauthorized"}``;
a body over the cap is refused with 413):

- ``GET  /report`` -> the host's report with ``"protocol": 2`` and ``"init"``.
- ``POST /init`` ``{"fence", "activation_id"}`` -> 200 result, 202 with ``Prefer: respond-async``,
  409 ``stale_fence`` / ``busy``.
- ``GET  /init/{activation_id}`` -> the init's status, 404 when unknown.
- ``POST /fence`` ``{"fence"}`` -> ``{"highest": m}``.
- ``POST /storage-domains/{sd_id}/connect`` and ``GET …/connect/{activation_id}``: as /init.
"""

from __future__ import annotations

import asyncio
import hmac
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import Future
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from hostagent.host import HostView
from hostagent.protocol import INIT_SCOPE, ActivationReused, InitBusy, InitRecord, connect_scope
from hostagent.runner import Operations, Work
from hostagent.snapshot import Snapshots
from models.errors import StaleFence
from models.fencing import MAX_FENCE, MIN_FENCE

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class FenceBody(BaseModel):
    """Body of ``POST /fence``: a fence is an integer 1 … 2⁶³−1 (SPEC Appendix B)."""

    model_config = ConfigDict(extra="ignore")
    fence: StrictInt = Field(ge=MIN_FENCE, le=MAX_FENCE)


class InitBody(FenceBody):
    """Body of ``POST /init`` and ``POST /storage-domains/{sd_id}/connect``."""

    activation_id: StrictStr = Field(min_length=1, max_length=200)

    @field_validator("activation_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        return printable_id(value)


def printable_id(value: str) -> str:
    """Refuse control characters (CR/LF would forge log lines) and lone surrogates (unencodable:
    they cannot be stored, logged or answered) in an activation id."""
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        raise ValueError("must hold no control characters and no lone surrogates")
    return value


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """422 naming the field; the input is never echoed (NaN, surrogates: not JSON-safe)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    first = errors[0] if errors else {}
    field = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    return JSONResponse({"error": "invalid", "field": field, "detail": message}, 422)


class ConnectBody(FenceBody):
    """Body of ``POST /storage-domains/{sd_id}/connect``: a v1 caller sends no activation id."""

    activation_id: StrictStr | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("activation_id")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        return None if value is None else printable_id(value)


class Guard:
    """ASGI middleware: no route without the bearer token (compared in constant time)."""

    def __init__(self, app: ASGIApp, token: bytes) -> None:
        self.app = app
        self._expected = b"Bearer " + token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a request without the token; pass the rest on."""
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                answer = JSONResponse({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _wants_async(request: Request) -> bool:
    prefer = request.headers.get("prefer", "")
    return "respond-async" in {part.strip().lower() for part in prefer.replace(";", ",").split(",")}


async def _answer(record: InitRecord, future: Future[InitRecord] | None, respond_async: bool) -> JSONResponse:
    if record.is_running and future is not None and not respond_async:
        try:
            record = await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            # The agent stops while the init runs (SIGTERM): the caller must read its outcome
            # as unknown and ask GET /init/{id} later, never as "not accepted".
            detail = "the agent is stopping while this init runs; ask GET /init/{activation_id}"
            return JSONResponse(
                {"error": "outcome_unknown", **record.running_body(), "detail": detail}, 503
            )
    if record.is_running:
        return JSONResponse({"status": "running"}, 202)
    return JSONResponse(record.result_body())


def _refusal(exc: StaleFence | InitBusy | ActivationReused) -> JSONResponse:
    if isinstance(exc, InitBusy | ActivationReused):
        return JSONResponse(exc.body(), 409)
    return JSONResponse({"error": "stale_fence", "highest": exc.highest}, 409)


def _unwritable(exc: OSError) -> JSONResponse:
    """503: the state (the fence) cannot be saved, so nothing was accepted or run."""
    detail = f"cannot save the agent's state: {exc.strerror or exc}; nothing was run"
    return JSONResponse({"error": "state_unwritable", "detail": detail}, 503)


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": "not_found", "detail": what}, 404)


def create_app(host: HostView, ops: Operations, max_body_bytes: int, looks: Snapshots) -> FastAPI:
    """Build the agent's routes (wrap the result in ``Guard`` before serving it).

    ``GET /report`` answers at once from ``looks``, the host's last snapshot.
    """
    app = FastAPI(
        title="autorecovery agent",
        version="2",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        max_body_size=max_body_bytes,  # 413 past it, with or without a Content-Length
        exception_handlers={RequestValidationError: _invalid},
    )
    host_id = host.config.host_id

    async def start(scope: str, body: InitBody, request: Request, work: Work) -> JSONResponse:
        try:
            # In a thread: accepting writes and fsyncs the state file; the event loop stays free.
            record, future = await asyncio.to_thread(ops.submit, scope, body.fence, body.activation_id, work)
        except (StaleFence, InitBusy, ActivationReused) as exc:
            return _refusal(exc)
        except OSError as exc:
            return _unwritable(exc)
        return await _answer(record, future, _wants_async(request))

    def status(scope: str, activation_id: str) -> JSONResponse:
        record = ops.state.lookup(scope, activation_id)
        if record is None:
            return _not_found("no record of that activation")
        return JSONResponse(record.status_body())

    @app.get("/report")
    def report() -> JSONResponse:
        body = looks.latest().body(host_id)
        # ``init`` names host inits only: a storage-domain connect is the product's own, under
        # another activation (it still makes a new init busy).
        running = ops.state.running()
        init = running.running_body() if running is not None and running.scope == INIT_SCOPE else None
        body.update(protocol=2, init=init, state_unwritable=ops.state_error, agent=ops.state.agent_body())
        return JSONResponse(body)

    @app.post("/init")
    async def init(body: InitBody, request: Request) -> JSONResponse:
        return await start(INIT_SCOPE, body, request, host.initialize)

    @app.get("/init/{activation_id}")
    def init_status(activation_id: str) -> JSONResponse:
        return status(INIT_SCOPE, activation_id)

    @app.post("/fence")
    def fence(body: FenceBody) -> JSONResponse:
        try:
            return JSONResponse({"highest": ops.saving(lambda: ops.state.raise_fence(body.fence))})
        except OSError as exc:
            return _unwritable(exc)

    @app.post("/storage-domains/{sd_id}/connect")
    async def connect(sd_id: str, body: ConnectBody, request: Request) -> JSONResponse:
        if sd_id not in host.config.storage_domains:
            return _not_found(f"that storage domain is not configured on host {host_id}")
        # A v1 caller sends no activation id: each such call is a new connect of its own.
        activation_id = body.activation_id or f"v1-{uuid.uuid4()}"
        init = InitBody(fence=body.fence, activation_id=activation_id)
        return await start(connect_scope(sd_id), init, request, lambda: host.connect(sd_id))

    @app.get("/storage-domains/{sd_id}/connect/{activation_id}")
    def connect_status(sd_id: str, activation_id: str) -> JSONResponse:
        return status(connect_scope(sd_id), activation_id)

    return app
