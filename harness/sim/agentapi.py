"""The simulator's agent routes (protocol v2, or v1 per host) and their bearer-token guard.

Each host's ``agent_url`` is ``{base}/agents/{host_id}``; docs/agent.md describes the protocol.
A v1 host has no status routes and no ``/fence`` (404, as an agent that predates them), sends
no ``protocol`` or ``init`` in its report, and runs whatever init it is sent.
"""

from __future__ import annotations

import asyncio
import hmac
import json

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.types import ASGIApp, Receive, Scope, Send

from harness.sim.calls import Answer
from harness.sim.state import SimState, hang, json_response
from models.errors import NotFound
from models.fencing import MAX_FENCE, MIN_FENCE, is_fence

AGENT_PREFIX = "/agents/"
UNAUTHORIZED = json.dumps({"error": "unauthorized"}).encode()


class InitBody(BaseModel):
    """Body of ``POST /init``."""

    fence: StrictInt = Field(ge=0, le=MAX_FENCE)  # v2 hosts: 1 and up (_bounded)
    activation_id: StrictStr = Field(min_length=1, max_length=200)


class ConnectBody(BaseModel):
    """Body of ``POST /storage-domains/{sd_id}/connect`` (v1 callers send no activation id)."""

    fence: StrictInt = Field(ge=0, le=MAX_FENCE)  # v2 hosts: 1 and up (_bounded)
    activation_id: StrictStr | None = Field(default=None, min_length=1, max_length=200)


class VmBody(BaseModel):
    """Body of ``POST /vms`` (a simulator extension: start a VM, as a scheduler would)."""

    model_config = ConfigDict(extra="forbid")

    vm_id: StrictStr = Field(min_length=1, max_length=200)


class FenceBody(BaseModel):
    """Body of ``POST /fence``."""

    fence: StrictInt = Field(ge=0, le=MAX_FENCE)  # v2 hosts: 1 and up (_bounded)


class BearerGuard:
    """Refuse agent requests without ``Authorization: Bearer <token>`` (401, v2 shape).

    An ASGI middleware rather than a dependency, so that a caller without the token learns
    nothing else (not even that its body is malformed or the host unknown).
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(AGENT_PREFIX):
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self._expected):
                await _refuse(send)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(UNAUTHORIZED)).encode()),
        (b"www-authenticate", b"Bearer"),
    ]
    await send({"type": "http.response.start", "status": 401, "headers": headers})
    await send({"type": "http.response.body", "body": UNAUTHORIZED})


def wants_async(request: Request) -> bool:
    """True when the caller sent ``Prefer: respond-async`` (RFC 7240)."""
    prefs = ",".join(request.headers.getlist("prefer"))
    return any(p.split(";")[0].strip().lower() == "respond-async" for p in prefs.split(","))


def _answer(answer: Answer) -> Response:
    return json_response(answer.body, status_code=202 if answer.is_running else 200)


def add_agent_routes(app: FastAPI, state: SimState) -> None:
    """Serve every simulated host's agent under ``/agents/{host_id}``."""
    fleet = state.fleet

    def require_v2(host_id: str) -> None:
        if not fleet.is_v2(host_id):
            raise NotFound("route", "(this agent speaks protocol v1)")

    def unbounded(host_id: str, fence: int) -> Response | None:
        """422 for a v2 host's fence outside 1 … 2⁶³−1 (Appendix B); a v1 agent takes 0 too."""
        if not fleet.is_v2(host_id) or is_fence(fence):
            return None
        text = f"fence: must be an integer {MIN_FENCE} … {MAX_FENCE}"
        return json_response({"error": "invalid_fence", "detail": text}, 422)

    @app.get("/agents/{host_id}/report")
    async def report(host_id: str, request: Request) -> Response:
        fault = fleet.host(host_id).fault
        if fault.silent:
            return await hang(request, state)
        if fault.report_delay_s > 0:
            await asyncio.sleep(fault.report_delay_s)
        return json_response(fleet.report(host_id))

    @app.post("/agents/{host_id}/init")
    async def init(host_id: str, body: InitBody, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await hang(request, state)
        wait = not wants_async(request)
        refused = unbounded(host_id, body.fence)
        return refused or _answer(await fleet.init(host_id, body.fence, body.activation_id, wait=wait))

    @app.post("/agents/{host_id}/vms")
    async def start_vm(host_id: str, body: VmBody, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await hang(request, state)
        return json_response(fleet.start_vm(host_id, body.vm_id))

    @app.get("/agents/{host_id}/init/{activation_id}")
    async def init_status(host_id: str, activation_id: str, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await hang(request, state)
        require_v2(host_id)
        found = fleet.calls.status((host_id,), activation_id)
        if found is None:
            raise NotFound("init", activation_id)
        return json_response(found)

    @app.post("/agents/{host_id}/fence")
    async def fence(host_id: str, body: FenceBody, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await hang(request, state)
        require_v2(host_id)
        refused = unbounded(host_id, body.fence)
        return refused or json_response({"highest": fleet.raise_fence(host_id, body.fence)})

    @app.post("/agents/{host_id}/storage-domains/{sd_id}/connect")
    async def connect(host_id: str, sd_id: str, body: ConnectBody, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await hang(request, state)
        wait = not wants_async(request)
        if (refused := unbounded(host_id, body.fence)) is not None:
            return refused
        return _answer(await fleet.connect(host_id, sd_id, body.fence, body.activation_id, wait=wait))

    @app.get("/agents/{host_id}/storage-domains/{sd_id}/connect/{activation_id}")
    async def connect_status(host_id: str, sd_id: str, activation_id: str, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await hang(request, state)
        require_v2(host_id)
        found = fleet.calls.status((host_id, sd_id), activation_id)
        if found is None:
            raise NotFound("connect", activation_id)
        return json_response(found)
