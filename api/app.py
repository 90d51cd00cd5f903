"""The HTTP API: ``create_app(settings)`` for ASGI servers and tests, ``serve(settings)`` to run it.

Nothing connects at import or in ``create_app`` (which only validates the tokens): the lifespan
builds the container (pool, Redis client) through the composition root and closes it on exit.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from kombu.connection import Connection
from starlette.types import ASGIApp, Receive, Scope, Send

from api import errors
from api.auth import load_tokens
from api.deps import API_PREFIX, Services, reauthenticate
from api.metrics import (
    build_registry,
    read_beat_seen,
    read_error_and_storage,
    read_fleet,
    read_last_tick,
    read_safety,
)
from api.routes import activation, audit, clusters, health, hosts, safety, storage, vmruns
from autorecovery import __version__
from autorecovery.adapters.queues import QueueDepth
from autorecovery.services import utcnow
from autorecovery.services.fleet import FleetService
from autorecovery.services.safety import SafetyService
from autorecovery.settings import Settings, load_settings

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
PROBE_TIMEOUT_S = 2.0


class BodyLimit:
    """Refuse a request whose declared body is larger than ``max_bytes`` (413)."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if not length.isdigit() or int(length) > self.max_bytes:
                response = errors.error_response(
                    413, "too_large", f"the body must be at most {self.max_bytes} bytes", "body"
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def ping_broker(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Open and close one connection to the Celery broker; raise when it does not answer."""
    options = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s, "max_retries": 0}
    broker = Connection(url, connect_timeout=timeout_s, transport_options=options)  # type: ignore[no-untyped-call]
    with broker as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_s)


def _close_all(*closers: Callable[[], None]) -> None:
    for close in closers:
        close()


def build_services(settings: Settings) -> Services:
    """Build the process's services through the composition root (connects lazily)."""
    import workers  # the Celery app: imported here, not at module import
    from autorecovery.bootstrap import build

    container = build(settings, workers.enqueue_activation, workers.enqueue_storage_activation)
    fleet = FleetService(
        container.db,
        workers.enqueue_activation,
        report_max_age_s=settings.report_max_age_s,
        clock=utcnow,
        caps=settings.cap_policy(),
    )
    broker_url = settings.effective_broker_url or ""
    queues = QueueDepth(broker_url, [workers.MONITORING_QUEUE, workers.ACTIVATION_QUEUE])
    return Services(
        fleet=fleet,
        safety=SafetyService(container.db, utcnow),
        storage=container.storage,
        vmruns=container.vmruns,
        probes={
            "postgresql": container.db.ping,
            "redis": container.redis.ping,
            "broker": lambda: ping_broker(broker_url),
        },
        registry=build_registry(
            lambda: read_fleet(container.db),
            lambda: read_last_tick(container.redis),
            lambda: read_safety(container.db, utcnow),
            lambda: read_error_and_storage(container.db, utcnow, settings.charge_window_s),
            beat_seen=lambda: read_beat_seen(container.redis),
            queues=queues.read,
        ),
        close=lambda: _close_all(queues.close, container.close),
    )


def create_app(settings: Settings | None = None, *, services: Services | None = None) -> FastAPI:
    """Build the ASGI app.

    Args:
        settings: the configuration; read from the environment when None.
        services: ready-made services (tests); otherwise the lifespan builds them.

    Raises:
        InvalidInput: naming AUTORECOVERY_API_TOKENS (or AUTORECOVERY_API_DEV_TOKEN) when the
            tokens are malformed or missing; the API never serves without authentication.
    """
    settings = settings or load_settings()
    tokens = load_tokens(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        built = services or build_services(settings)
        app.state.services = built
        log.info(
            "API ready on %s:%s; tokens: %s", settings.api_host, settings.api_port, ", ".join(tokens.names)
        )
        try:
            yield
        finally:
            app.state.services = None
            if services is None:
                built.close()

    app = FastAPI(
        title="autorecovery",
        version=__version__,
        summary="Bring failed hypervisor hosts back, safely and explainably.",
        lifespan=lifespan,
    )
    app.state.tokens = tokens
    app.state.services = services
    errors.install(app, reauthenticate)
    for module in (hosts, activation, clusters, audit, safety, vmruns, storage):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(health.router)
    app.add_middleware(BodyLimit)
    return app


def serve(settings: Settings | None = None, **uvicorn_options: Any) -> None:
    """Run the API with uvicorn on ``api_host:api_port`` until stopped.

    Raises:
        InvalidInput: naming the variable, before anything binds, when the tokens are wrong.
    """
    settings = settings or load_settings()
    app = create_app(settings)
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "server_header": False,
        "log_level": "info",
    }
    options.update(uvicorn_options)
    uvicorn.run(app, **options)
