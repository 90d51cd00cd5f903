"""The fleet simulator's HTTP app: an agent for every host, plus a control interface.

Agent routes (each host's ``agent_url`` is ``{base}/agents/{host_id}``) speak agent protocol v2
as docs/agent.md describes, or v1 for hosts switched to it (see ``harness.sim.agentapi``): the
report, ``/init`` and its status, ``/fence``, storage-domain connect and its status. With a
token, every agent route needs ``Authorization: Bearer <token>`` (401 ``{"error":
"unauthorized"}``); control routes never do. An unknown host (or a domain the host does not
have) is 404 ``{"detail": ...}``, a bad body 422. A ``silent`` host answers nothing until the
client gives up. ``init_delay`` slows init and connect (a long one is a hung init); it keeps
running after its caller gives up, as on a real host. ``init_hang`` (``connect_hang``) makes an
init (a storage connect) answer nothing and never end until the fault is cleared, as on a host
with a hung libvirtd (mount); then it runs. ``report_delay`` slows the report.

Control routes:

- ``GET  /control/fleet[?cluster=c-1]`` -> ``{"clusters": [registration], "hosts": [{"id", "protocol",
  "cluster", "agent_url", "faults"}], "count": n}``; ``faults`` lists only active faults.
- ``POST /control/faults`` with::

      {"fault": "sd_down" | "nic_down" | "kvm_down" | "silent" | "init_fail" | "init_delay"
                | "init_hang" | "connect_hang" | "report_delay" | "version" | "vm_fail" | "pool_stopped"
                | "net_stopped",
       "hosts": ["h-0001", ...], "cluster": "c-1", "storage_domain": "sd-c-1-1", "all": false,
       "target": "sd-c-1-1" | "vmnet", "reason": "...", "detail": "...", "seconds": 5.0,
       "version": "4.4"}

  The selectors ``hosts``, ``cluster``, ``storage_domain`` combine with AND; give at least one,
  or ``"all": true``. Parameters: ``target`` for sd_down and pool_stopped (defaults to
  ``storage_domain``), nic_down and net_stopped; ``seconds`` for init_delay and report_delay;
  ``version`` for version; optional ``reason`` and ``detail`` for init_fail. A parameter the
  fault does not take is refused.
  -> 200 ``{"fault": kind, "count": n, "hosts": [ids]}``; 422 naming the field otherwise.
- ``POST /control/clear`` with the same selectors (none: every host) and optional ``fault``
  and ``target`` (sd_down/pool_stopped default to ``storage_domain``) to clear only that
  -> ``{"fault": kind | null, "count", "hosts"}``.
- ``GET  /control/inits[?host_id=]`` and ``GET /control/connects[?host_id=&sd_id=]`` ->
  ``{"calls": [...], "count": n}``.
- ``GET  /control/overlaps`` -> ``{"hosts": {host_id: [[call, call], ...]}, "count": n,
  "storage_domains": {sd_id: [[call, call], ...]}, "storage_domain_count": m}``.
- ``POST /control/protocol`` with ``{"protocol": 1 | 2}`` and the selectors (none: every host)
  -> ``{"protocol", "count", "hosts"}``: which agent protocol the hosts speak.
- ``POST /control/reset-record`` with optional ``{"fences": true}`` to forget accepted fences.
- ``GET  /healthz`` -> ``{"status": "ok", "hosts": n, "clusters": m}``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import Body, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from harness.sim.agentapi import BearerGuard, add_agent_routes
from harness.sim.faults import MAX_DELAY_S, ON_STORAGE, FaultKind, FaultSpec
from harness.sim.fleet import Fleet
from harness.sim.state import SimState, json_response
from hostagent.protocol import InitBusy
from models.errors import InvalidInput, NotFound, StaleFence

logger = logging.getLogger(__name__)


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


class ProtocolBody(Selection):
    """Body of ``POST /control/protocol``."""

    protocol: Literal[1, 2]


class ResetBody(BaseModel):
    """Body of ``POST /control/reset-record``."""

    model_config = ConfigDict(extra="forbid")

    fences: bool = False


def request_stop(app: FastAPI) -> None:
    """Tell the app's silent requests to end so that the server can shut down promptly."""
    state: SimState | None = getattr(app.state, "sim", None)
    if state is not None:
        state.stopping = True


def create_app(fleet: Fleet, token: str | None = None) -> FastAPI:
    """Build the simulator app serving every host of ``fleet``.

    Args:
        fleet: the simulated hosts.
        token: the agents' bearer token; None serves the agent routes without authentication.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await fleet.calls.cancel_all()

    app = FastAPI(title="autorecovery fleet simulator", version="2", lifespan=lifespan)
    state = SimState(fleet)
    app.state.sim = state
    if token is not None:
        if not token:
            raise InvalidInput("token", "must not be empty")
        app.add_middleware(BearerGuard, token=token)
    _add_error_handlers(app)
    add_agent_routes(app, state)
    _add_control_routes(app, state)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidInput)
    async def invalid(request: Request, exc: InvalidInput) -> Response:
        error = {"loc": ["body", exc.field], "msg": exc.message, "type": "value_error"}
        return json_response({"detail": [error]}, status_code=422)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return json_response({"detail": str(exc)}, status_code=404)

    @app.exception_handler(StaleFence)
    async def stale(request: Request, exc: StaleFence) -> Response:
        return json_response({"error": "stale_fence", "highest": exc.highest}, status_code=409)

    @app.exception_handler(InitBusy)
    async def busy(request: Request, exc: InitBusy) -> Response:
        return json_response(exc.body(), status_code=409)


def _add_control_routes(app: FastAPI, state: SimState) -> None:
    fleet = state.fleet

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "hosts": len(fleet.hosts), "clusters": len(fleet.clusters)})

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
                "protocol": fleet.protocol(h.id),
            }
            for h in fleet.hosts.values()
            if cluster in (None, h.cluster)
        ]
        body = {"clusters": [c.to_dict() for c in clusters], "hosts": hosts, "count": len(hosts)}
        return json_response(body)

    @app.post("/control/faults")
    async def inject(body: FaultBody) -> Response:
        target = body.target
        if body.fault in ON_STORAGE and target is None:
            target = body.storage_domain
        spec = FaultSpec(body.fault, target, body.reason, body.detail, body.seconds, body.version)
        spec.check()
        ids = fleet.select(body.hosts, body.cluster, body.storage_domain, body.all_hosts)
        ids = fleet.inject(spec, ids)
        return json_response({"fault": body.fault, "count": len(ids), "hosts": ids})

    @app.post("/control/clear")
    async def clear(body: Annotated[ClearBody | None, Body()] = None) -> Response:
        sel = body or ClearBody()
        is_everyone = sel.hosts is None and sel.cluster is None and sel.storage_domain is None
        ids = fleet.select(sel.hosts, sel.cluster, sel.storage_domain, is_everyone)
        target = sel.target
        if sel.fault in ON_STORAGE and target is None:
            target = sel.storage_domain
        ids = fleet.clear(ids, sel.fault, target)
        return json_response({"fault": sel.fault, "count": len(ids), "hosts": ids})

    @app.get("/control/inits")
    async def inits(host_id: str | None = None) -> Response:
        if host_id is not None:
            fleet.host(host_id)
        calls = [c.to_dict() for c in fleet.inits if host_id in (None, c.host_id)]
        return json_response({"calls": calls, "count": len(calls)})

    @app.get("/control/connects")
    async def connects(host_id: str | None = None, sd_id: str | None = None) -> Response:
        calls = [
            c.to_dict() for c in fleet.connects if host_id in (None, c.host_id) and sd_id in (None, c.sd_id)
        ]
        return json_response({"calls": calls, "count": len(calls)})

    @app.get("/control/overlaps")
    async def overlaps() -> Response:
        hosts = fleet.overlaps()
        sds = fleet.connect_overlaps()
        return json_response(
            {
                "hosts": {h: [[a.to_dict(), b.to_dict()] for a, b in p] for h, p in hosts.items()},
                "count": sum(len(p) for p in hosts.values()),
                "storage_domains": {sd: [[a.to_dict(), b.to_dict()] for a, b in p] for sd, p in sds.items()},
                "storage_domain_count": sum(len(p) for p in sds.values()),
            }
        )

    @app.post("/control/protocol")
    async def protocol(body: ProtocolBody) -> Response:
        is_everyone = body.hosts is None and body.cluster is None and body.storage_domain is None
        ids = fleet.select(body.hosts, body.cluster, body.storage_domain, is_everyone)
        ids = fleet.set_protocol(ids, body.protocol)
        return json_response({"protocol": body.protocol, "count": len(ids), "hosts": ids})

    @app.post("/control/reset-record")
    async def reset_record(body: Annotated[ResetBody | None, Body()] = None) -> Response:
        fences = body.fences if body else False
        fleet.reset_record(fences=fences)
        logger.info("reset the call record (fences too: %s)", fences)
        return json_response({"ok": True, "fences_reset": fences})
