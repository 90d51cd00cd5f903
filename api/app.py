"""The HTTP API: ``create_app(settings)`` for ASGI servers and tests (``api.server`` runs it).

Nothing connects at import or in ``create_app`` (which only validates the tokens): the lifespan
builds the container (pool, Redis client) through the composition root and closes it on exit.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import docs, errors
from api.auth import load_tokens
from api.deps import API_PREFIX, Services, reauthenticate
from api.guard import Guard
from api.metrics import (
    build_registry,
    read_beat_seen,
    read_error_and_storage,
    read_fleet,
    read_last_tick,
    read_safety,
)
from api.probes import BrokerProbe, Cached
from api.push import ReportPush
from api.routes import activation, audit, clusters, health, hosts, reports, safety, storage, vmruns
from autorecovery import __version__
from autorecovery.adapters.queues import QueueDepth
from autorecovery.services import utcnow
from autorecovery.settings import Settings, load_settings

log = logging.getLogger(__name__)

#: The largest request body, counted as it arrives (FastAPI's max_body_size); bulk routes
#: set their own.
MAX_BODY_BYTES = 1024 * 1024


def _close_all(*closers: Callable[[], None]) -> None:
    for close in closers:
        close()


def build_services(settings: Settings) -> Services:
    """Build the process's services through the composition root (connects lazily)."""
    import workers  # the Celery app: imported here, not at module import
    from autorecovery.bootstrap import build

    container = build(settings, workers.enqueue_activation, workers.enqueue_storage_activation)
    broker_url = settings.effective_broker_url or ""
    broker = BrokerProbe(broker_url)
    queues = QueueDepth(broker_url, [workers.MONITORING_QUEUE, workers.ACTIVATION_QUEUE])
    return Services(
        container,
        probes={
            "postgresql": Cached(container.db.ping),
            "redis": Cached(container.redis.ping),
            "broker": Cached(broker),
        },
        registry=build_registry(
            lambda: read_fleet(container.db),
            lambda: read_last_tick(container.redis),
            lambda: read_safety(container.db, utcnow),
            lambda: read_error_and_storage(container.db, utcnow, settings.charge_window_s),
            beat_seen=lambda: read_beat_seen(container.redis),
            queues=queues.read,
        ),
        on_close=lambda: _close_all(broker.close, queues.close),
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
        # No redirect to a slash-less path: its Location would be built from the Host header.
        redirect_slashes=False,
        docs_url=None,  # served from local files below, so that /docs works offline
        redoc_url=None,
    )
    app.state.tokens = tokens
    app.state.services = services
    errors.install(app, reauthenticate)
    for module in (hosts, activation, clusters, audit, safety, vmruns, storage, reports):
        # Per router, not per app: FastAPI's app-wide limit sits outside the Guard and would
        # answer a caller without a token 413 instead of 401.
        app.include_router(module.router, prefix=API_PREFIX, max_body_size=MAX_BODY_BYTES)
    app.include_router(health.router)
    docs.install(app)
    # Inside the Guard: single-report pushes skip the framework (``api.push``).
    app.add_middleware(ReportPush, max_bytes=hosts.MAX_REPORT_BYTES)
    app.add_middleware(Guard, tokens=tokens)
    return app
