"""Liveness, readiness and metrics, outside ``/api/v1``.

``/healthz`` and ``/readyz`` need no token (probes of orchestrators carry none); ``/metrics``
needs a viewer token, like every read (Prometheus sends one with ``authorization``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from api.deps import Viewer, error_responses, services

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 2.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Answer while the process serves requests."""
    return {"status": "ok"}


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


@router.get("/readyz", responses={503: {"description": "a dependency is unreachable"}})
async def readyz(request: Request) -> JSONResponse:
    """Answer 200 when PostgreSQL, Redis and the broker all answer, else 503 naming which not."""
    found = getattr(request.app.state, "services", None)
    if found is None:
        return JSONResponse({"status": "starting", "checks": {}, "failed": []}, status_code=503)
    results = dict(await asyncio.gather(*(_probe(n, c) for n, c in found.probes.items())))
    failed = sorted(name for name, state in results.items() if state != "ok")
    body = {"status": "not_ready" if failed else "ready", "checks": results, "failed": failed}
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
