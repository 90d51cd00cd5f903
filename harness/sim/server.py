"""The fleet simulator's HTTP app: agent protocol v1 for every host, plus a control interface.

Agent routes (each host's ``agent_url`` is ``{base}/agents/{host_id}``):

- ``GET  /agents/{host_id}/report`` -> 200 report (Appendix A shape).
- ``POST /agents/{host_id}/init`` with ``{"fence": int >= 0, "activation_id": str}``.
- ``POST /agents/{host_id}/storage-domains/{sd_id}/connect`` with ``{"fence": int >= 0}``.

Both POSTs answer 200 ``{"ok": true}`` or ``{"ok": false, "reason": ..., "detail": ...}``, 409
``{"error": "stale_fence", "highest": n}``, 404 ``{"detail": ...}`` for an unknown host (or a
domain the host does not have), 422 for a bad body. A ``silent`` host answers nothing until the
client gives up. ``init_delay`` slows init and connect; ``report_delay`` slows the report.

Control routes:

- ``GET  /control/fleet[?cluster=c-1]`` -> ``{"clusters": [registration], "hosts": [{"id",
  "cluster", "agent_url", "faults"}], "count": n}``; ``faults`` lists only active faults.
- ``POST /control/faults`` with::

      {"fault": "sd_down" | "nic_down" | "kvm_down" | "silent" | "init_fail" | "init_delay"
                | "report_delay" | "version",
       "hosts": ["h-0001", ...], "cluster": "c-1", "storage_domain": "sd-c-1-1", "all": false,
       "target": "sd-c-1-1" | "vmnet", "reason": "...", "detail": "...", "seconds": 5.0,
       "version": "4.4"}

  The selectors ``hosts``, ``cluster``, ``storage_domain`` combine with AND; give at least one,
  or ``"all": true``. Parameters: ``target`` for sd_down (defaults to ``storage_domain``) and
  nic_down; ``seconds`` for init_delay and report_delay; ``version`` for version; optional
  ``reason`` and ``detail`` for init_fail. A parameter the fault does not take is refused.
  -> 200 ``{"fault": kind, "count": n, "hosts": [ids]}``; 422 naming the field otherwise.
- ``POST /control/clear`` with the same selectors (none: every host) and optional ``fault``
  and ``target`` (sd_down/nic_down; sd_down defaults to ``storage_domain``) to clear only that
  -> ``{"fault": kind | null, "count", "hosts"}``.
- ``GET  /control/inits[?host_id=]`` and ``GET /control/connects[?host_id=&sd_id=]`` ->
  ``{"calls": [...], "count": n}``.
- ``GET  /control/overlaps`` -> ``{"hosts": {host_id: [[call, call], ...]}, "count": n,
  "storage_domains": {sd_id: [[call, call], ...]}, "storage_domain_count": m}``.
- ``POST /control/reset-record`` with optional ``{"fences": true}`` to forget accepted fences.
- ``GET  /healthz`` -> ``{"status": "ok", "hosts": n, "clusters": m}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import Body, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from harness.sim.faults import MAX_DELAY_S, FaultKind, FaultSpec
from harness.sim.fleet import FenceRefused, Fleet
from models.errors import InvalidInput, NotFound

logger = logging.getLogger(__name__)

#: How long a silent agent keeps a request open: longer than any sane client timeout.
SILENT_HANG_S = 3600.0
_POLL_S = 0.25


@dataclass(slots=True)
class SimState:
    """What the app shares between requests: the fleet, and whether the server is stopping."""

    fleet: Fleet
    stopping: bool = False


class InitBody(BaseModel):
    """Body of ``POST /init``."""

    fence: StrictInt = Field(ge=0)
    activation_id: StrictStr = Field(min_length=1, max_length=200)


class VmBody(BaseModel):
    """Body of ``POST /vms`` (a simulator extension: start a VM, as a scheduler would)."""

    model_config = ConfigDict(extra="forbid")

    vm_id: StrictStr = Field(min_length=1, max_length=200)


class ConnectBody(BaseModel):
    """Body of ``POST /storage-domains/{sd_id}/connect``."""

    fence: StrictInt = Field(ge=0)


class Selection(BaseModel):
    """Which hosts a control call applies to; selectors combine with AND."""

    model_config = ConfigDict(extra="forbid")

    hosts: list[StrictStr] | None = None
    cluster: StrictStr | None = None
    storage_domain: StrictStr | None = None
    all_hosts: bool = Field(default=False, alias="all")


class FaultBody(Selection):
    """Body of ``POST /control/faults``."""

    fault: FaultKind
    target: StrictStr | None = None
    reason: StrictStr | None = Field(default=None, min_length=1)
    detail: StrictStr | None = None
    seconds: float | None = Field(default=None, ge=0, le=MAX_DELAY_S)
    version: StrictStr | None = Field(default=None, min_length=1)


class ClearBody(Selection):
    """Body of ``POST /control/clear``."""

    fault: FaultKind | None = None
    target: StrictStr | None = None


class ResetBody(BaseModel):
    """Body of ``POST /control/reset-record``."""

    model_config = ConfigDict(extra="forbid")

    fences: bool = False


def _json(body: object, status_code: int = 200) -> Response:
    # Serialise directly: FastAPI's jsonable_encoder would walk every host on large answers.
    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status_code=status_code, media_type="application/json")


async def _hang(request: Request, state: SimState) -> Response:
    """Keep a silent agent's request open until the client leaves or the server stops."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SILENT_HANG_S
    while loop.time() < deadline and not state.stopping:
        await asyncio.sleep(_POLL_S)
        if await request.is_disconnected():
            break
    return _json({"detail": "agent silent"}, status_code=503)


def request_stop(app: FastAPI) -> None:
    """Tell the app's silent requests to end so that the server can shut down promptly."""
    state: SimState = app.state.sim
    state.stopping = True


def create_app(fleet: Fleet) -> FastAPI:
    """Build the simulator app serving every host of ``fleet``."""
    app = FastAPI(title="autorecovery fleet simulator", version="1")
    state = SimState(fleet)
    app.state.sim = state
    _add_error_handlers(app)
    _add_agent_routes(app, state)
    _add_control_routes(app, state)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidInput)
    async def invalid(request: Request, exc: InvalidInput) -> Response:
        error = {"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}
        return _json({"detail": [error]}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return _json({"detail": str(exc)}, status_code=404)

    @app.exception_handler(FenceRefused)
    async def stale(request: Request, exc: FenceRefused) -> Response:
        return _json({"error": "stale_fence", "highest": exc.highest}, status_code=409)


def _add_agent_routes(app: FastAPI, state: SimState) -> None:
    fleet = state.fleet

    @app.get("/agents/{host_id}/report")
    async def report(host_id: str, request: Request) -> Response:
        fault = fleet.host(host_id).fault
        if fault.silent:
            return await _hang(request, state)
        if fault.report_delay_s > 0:
            await asyncio.sleep(fault.report_delay_s)
        return _json(fleet.report(host_id))

    @app.post("/agents/{host_id}/init")
    async def init(host_id: str, body: InitBody, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await _hang(request, state)
        return _json(await fleet.init(host_id, body.fence, body.activation_id))

    @app.post("/agents/{host_id}/vms")
    async def start_vm(host_id: str, body: VmBody, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await _hang(request, state)
        return _json(fleet.start_vm(host_id, body.vm_id))

    @app.post("/agents/{host_id}/storage-domains/{sd_id}/connect")
    async def connect(host_id: str, sd_id: str, body: ConnectBody, request: Request) -> Response:
        if fleet.host(host_id).fault.silent:
            return await _hang(request, state)
        return _json(await fleet.connect(host_id, sd_id, body.fence))


def _add_control_routes(app: FastAPI, state: SimState) -> None:
    fleet = state.fleet

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json({"status": "ok", "hosts": len(fleet.hosts), "clusters": len(fleet.clusters)})

    @app.get("/control/fleet")
    async def show_fleet(request: Request, cluster: str | None = None) -> Response:
        base = str(request.base_url).rstrip("/")
        clusters = [c for c in fleet.clusters.values() if cluster in (None, c.id)]
        hosts = [
            {
                "id": h.id,
                "cluster": h.cluster,
                "agent_url": f"{base}/agents/{h.id}",
                "faults": h.fault.active(),
            }
            for h in fleet.hosts.values()
            if cluster in (None, h.cluster)
        ]
        body = {"clusters": [c.to_dict() for c in clusters], "hosts": hosts, "count": len(hosts)}
        return _json(body)

    @app.post("/control/faults")
    async def inject(body: FaultBody) -> Response:
        target = body.target
        if body.fault is FaultKind.SD_DOWN and target is None:
            target = body.storage_domain
        spec = FaultSpec(body.fault, target, body.reason, body.detail, body.seconds, body.version)
        spec.check()
        ids = fleet.select(body.hosts, body.cluster, body.storage_domain, body.all_hosts)
        ids = fleet.inject(spec, ids)
        return _json({"fault": body.fault, "count": len(ids), "hosts": ids})

    @app.post("/control/clear")
    async def clear(body: Annotated[ClearBody | None, Body()] = None) -> Response:
        sel = body or ClearBody()
        is_everyone = sel.hosts is None and sel.cluster is None and sel.storage_domain is None
        ids = fleet.select(sel.hosts, sel.cluster, sel.storage_domain, is_everyone)
        target = sel.target
        if sel.fault is FaultKind.SD_DOWN and target is None:
            target = sel.storage_domain
        ids = fleet.clear(ids, sel.fault, target)
        return _json({"fault": sel.fault, "count": len(ids), "hosts": ids})

    @app.get("/control/inits")
    async def inits(host_id: str | None = None) -> Response:
        if host_id is not None:
            fleet.host(host_id)
        calls = [c.to_dict() for c in fleet.inits if host_id in (None, c.host_id)]
        return _json({"calls": calls, "count": len(calls)})

    @app.get("/control/connects")
    async def connects(host_id: str | None = None, sd_id: str | None = None) -> Response:
        calls = [
            c.to_dict() for c in fleet.connects if host_id in (None, c.host_id) and sd_id in (None, c.sd_id)
        ]
        return _json({"calls": calls, "count": len(calls)})

    @app.get("/control/overlaps")
    async def overlaps() -> Response:
        hosts = fleet.overlaps()
        sds = fleet.connect_overlaps()
        return _json(
            {
                "hosts": {h: [[a.to_dict(), b.to_dict()] for a, b in p] for h, p in hosts.items()},
                "count": sum(len(p) for p in hosts.values()),
                "storage_domains": {sd: [[a.to_dict(), b.to_dict()] for a, b in p] for sd, p in sds.items()},
                "storage_domain_count": sum(len(p) for p in sds.values()),
            }
        )

    @app.post("/control/reset-record")
    async def reset_record(body: Annotated[ResetBody | None, Body()] = None) -> Response:
        fences = body.fences if body else False
        fleet.reset_record(fences=fences)
        logger.info("reset the call record (fences too: %s)", fences)
        return _json({"ok": True, "fences_reset": fences})
