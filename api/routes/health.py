"""Liveness, readiness and metrics, outside ``/api/v1``.

``/healthz`` and ``/readyz`` need no token (probes of orchestrators carry none); ``/metrics``
needs a viewer token, like every read (Prometheus sends one with ``authorization``).

Anonymous ``/readyz`` says only ready or not ready; with a viewer (or admin) token it also names
each dependency's state and says whether automatic activation is held (``automatic_activation``).
That is information for people and dashboards: the API serves whatever the gate says, so the
gate never changes the status code, which is the readiness of the API alone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.auth import TokenTable
from api.deps import Services, Viewer, bearer_token, error_responses, services

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 2.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Answer while the process serves requests."""
    return {"status": "ok"}


@router.head("/healthz", operation_id="healthz_head", response_class=Response)
def healthz_head() -> Response:
    """Answer while the process serves requests (load balancers probe with HEAD)."""
    return Response(status_code=200)


async def _probe(name: str, check: Any) -> tuple[str, str]:
    try:
        result = await asyncio.wait_for(run_in_threadpool(check), PROBE_TIMEOUT_S)
    except TimeoutError:
        log.warning("readyz: %s did not answer within %.1fs", name, PROBE_TIMEOUT_S)
        return name, f"no answer within {PROBE_TIMEOUT_S:.0f}s"
    except Exception as exc:  # a probe is a boundary: any failure means "not ready", with its name
        log.warning("readyz: %s failed: %s", name, exc)
        return name, f"unreachable ({type(exc).__name__})"
    if result is False:
        return name, "unreachable"
    return name, "ok"


#: What the tick says when a store fails, so that /readyz gives the same reason codes.
_DOWN = {
    "redis": "redis_unavailable: the lock service does not answer",
    "postgresql": "postgresql_unavailable: the database does not answer",
}


async def _automatic_activation(found: Services, failed: list[str]) -> dict[str, Any]:
    """Whether the observer holds automatic activation, and the scopes paused.

    ``paused`` is null when the pauses cannot be read (PostgreSQL is down).
    """
    gate: str | None = _DOWN["postgresql"]
    paused: list[str] | None = None
    if "postgresql" not in failed:
        try:
            state = await asyncio.wait_for(run_in_threadpool(found.container.safety.state), PROBE_TIMEOUT_S)
        except Exception as exc:  # a probe is a boundary: the gate is unknown, say why
            log.warning("readyz: cannot read the safety state: %s", exc)
        else:
            gate = state["gate"]
            paused = sorted(p["scope"] for p in state["pauses"])
    if "redis" in failed:  # the tick holds every activation on it first
        gate = _DOWN["redis"]
    return {"gated": gate is not None, "reason": gate, "paused": paused}


def _is_reader(request: Request) -> bool:
    """True when the request carries a token that may read (viewer or admin)."""
    token = bearer_token(request)
    tokens: TokenTable = request.app.state.tokens
    principal = tokens.authenticate(token) if token else None
    return principal is not None and principal.can_read


@router.get("/readyz", responses={503: {"description": "a dependency is unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Answer 200 when PostgreSQL, Redis and the broker all answer, else 503.

    Without a token, only ``status`` (ready, not_ready or starting). With a viewer token, also
    each check's state, the ``failed`` ones, and ``automatic_activation``: whether the observer
    holds automatic activation (``gated``, with the gate's ``reason``: the last full tick's, or
    a failing PostgreSQL or Redis) and which scopes are ``paused``. It is informational: it
    never changes the status code.
    """
    found = getattr(request.app.state, "services", None)
    if found is None:
        return JSONResponse({"status": "starting"}, status_code=503)
    results = dict(await asyncio.gather(*(_probe(n, c) for n, c in found.probes.items())))
    failed = sorted(name for name, state in results.items() if state != "ok")
    if not _is_reader(request):
        return JSONResponse(
            {"status": "not_ready" if failed else "ready"}, status_code=503 if failed else 200
        )
    body = {
        "status": "not_ready" if failed else "ready",
        "checks": results,
        "failed": failed,
        "automatic_activation": await _automatic_activation(found, failed),
    }
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **error_responses(401, 503),
    },
)
def metrics(request: Request, _: Viewer) -> Response:
    """Prometheus metrics, computed now from PostgreSQL and Redis."""
    return Response(generate_latest(services(request).registry), media_type=CONTENT_TYPE_LATEST)
