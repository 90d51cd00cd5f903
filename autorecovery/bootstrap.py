"""The composition root: the one place that builds the services, over real adapters or fakes.

``connect(settings)`` opens the real adapters (PostgreSQL pool, Redis client, HTTP agent client);
``build_services(settings, adapters, enqueue, …)`` wires every service over any adapters, real
or fake; ``build(settings, enqueue, …)`` does both. Nothing connects at import time: Celery
builds a container in each worker process, the API in its lifespan, the CLI per command.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import redis

from autorecovery.adapters.agents.http import HttpAgentClient
from autorecovery.adapters.locks import ObjectLock
from autorecovery.adapters.store import PG_REPOS, Database
from autorecovery.adapters.store.db import SessionLimits
from autorecovery.ports import AgentClient, CheckSender, Enqueuer, Lock, Repos
from autorecovery.services import Clock, utcnow
from autorecovery.services.activation import ActivationService, InitWait, RecoverySafety
from autorecovery.services.agent_hold import AgentHoldService
from autorecovery.services.fleet import FleetService
from autorecovery.services.housekeeping import HousekeepingService
from autorecovery.services.intake import ReportIntake
from autorecovery.services.monitoring import BatchSender, MonitoringService, TickConfig
from autorecovery.services.onboarding import OnboardingService
from autorecovery.services.reaper import Reaper
from autorecovery.services.retention import RetentionPolicy, RetentionService
from autorecovery.services.safety import SafetyService
from autorecovery.services.storage import StorageService
from autorecovery.services.views import FleetViews
from autorecovery.services.vmruns import ErrorPolicy, VmRunService
from autorecovery.settings import Settings
from models.errors import BrokerUnavailable, InvalidInput
from models.placement import Weights

log = logging.getLogger(__name__)


def require_urls(settings: Settings) -> tuple[str, str]:
    """Return (database_url, redis_url), or say how to set them.

    Raises:
        InvalidInput: naming the variable that is not set.
    """
    if not settings.database_url:
        raise InvalidInput(
            "AUTORECOVERY_DATABASE_URL",
            "is not set; set it, or run `autorecovery up` for the embedded default",
        )
    if not settings.redis_url:
        raise InvalidInput(
            "AUTORECOVERY_REDIS_URL",
            "is not set; set it, or run `autorecovery up` for the embedded default",
        )
    return settings.database_url, settings.redis_url


def error_policy(settings: Settings) -> ErrorPolicy:
    """The error-state and placement policy from settings."""
    return ErrorPolicy(
        charge_limit=settings.charge_limit,
        charge_window_s=settings.charge_window_s,
        error_period_s=settings.error_period_s,
        weights=Weights(per_charge=settings.placement_charge_penalty),
    )


def retention_policy(settings: Settings) -> RetentionPolicy:
    """How long history is kept, from settings."""
    return RetentionPolicy(
        audit_days=settings.retention_audit_days,
        activations_days=settings.retention_activations_days,
        vm_runs_days=settings.retention_vm_runs_days,
        batch_size=settings.prune_batch_size,
    )


def session_limits(settings: Settings) -> SessionLimits:
    """What bounds a PostgreSQL session's waits, from the settings."""
    return SessionLimits(lock_timeout_s=settings.db_lock_timeout_s)


@contextmanager
def retention(settings: Settings, database_url: str) -> Iterator[RetentionService]:
    """The pruning alone, over a one-connection pool (``autorecovery prune``: no Redis needed)."""
    db = Database(database_url, max_size=1, limits=session_limits(settings))
    db.open()
    try:
        yield RetentionService(db, utcnow, retention_policy(settings))
    finally:
        db.close()


def tick_config(settings: Settings) -> TickConfig:
    """The monitoring tick's configuration from settings."""
    return TickConfig(
        batch_size=settings.batch_size,
        report_max_age_s=settings.report_max_age_s,
        tick_interval_s=settings.tick_interval_s,
        queued_ttl_s=settings.activation_queued_ttl_s + settings.tick_interval_s,
        reap_running_after_s=settings.reap_running_after_s,
        caps=settings.cap_policy(),
        max_silent_share=settings.observer_max_silent_share,
        quiet_period=settings.observer_quiet_period,
        incident_min_hosts=settings.incident_min_hosts,
        incident_window_s=settings.incident_window_s,
        sd_inactive_after_s=settings.sd_inactive_after_s,
        min_spacing_s=settings.tick_min_spacing_s,
        deadline_s=settings.tick_deadline_s,
        resend_after_s=settings.resend_after_sent_s,
        max_resends=settings.resend_max,
        max_clock_skew_s=settings.max_clock_skew_s,
        fence_backoff_max_s=settings.fence_push_backoff_max_s,
        init_max_s=settings.init_max_s,
        pushed_batch_size=settings.pushed_batch_size,
        resend_check_after_s=settings.resend_check_after_s,
    )


def recovery_safety(settings: Settings) -> RecoverySafety:
    """Backoff and flap limits of automatic activation from settings."""
    return RecoverySafety(
        backoff_base_s=settings.tick_interval_s,
        backoff_max_s=settings.backoff_max_s,
        flap_limit=settings.flap_limit,
        flap_window_s=settings.flap_window_s,
    )


@dataclass
class Adapters:
    """What the services talk to: real clients in a process, fakes in unit tests.

    ``db`` is a ``Database`` or anything with its ``transaction()`` (the in-memory fake), and
    ``redis`` a Redis client (fakeredis in unit tests).
    """

    db: Database
    redis: redis.Redis
    agents: AgentClient
    repos: Repos = PG_REPOS
    clock: Clock = utcnow
    close: Callable[[], None] = field(default=lambda: None)

    def lock(self, key: str, ttl_s: float) -> Lock:
        """A lock on ``key`` in this Redis (the ``Lock`` port; fakeredis in unit tests)."""
        return ObjectLock(self.redis, key, ttl_s)

    def redis_ping(self) -> bool:
        """True when Redis answers (the tick gates activation on it)."""
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False


def connect(settings: Settings) -> Adapters:
    """Open the real adapters: the PostgreSQL pool, the Redis client, the HTTP agent client.

    Raises:
        InvalidInput: naming the URL variable that is not set.
    """
    database_url, redis_url = require_urls(settings)
    db = Database(database_url, max_size=settings.db_pool_max, limits=session_limits(settings))
    db.open()
    client = redis.Redis.from_url(
        redis_url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=30
    )
    agents = HttpAgentClient(
        report_timeout_s=settings.agent_timeout_s,
        init_timeout_s=settings.init_timeout_s,
        concurrency=settings.agent_concurrency,
        retries=settings.agent_retries,
        credentials=settings.agent_credentials(),
        plain_http_networks=settings.plain_http_networks(),
        ca_file=settings.agent_ca_file,
        max_report_bytes=settings.agent_max_report_bytes,
        max_skew_s=settings.max_clock_skew_s,
        url_policy=settings.agent_url_policy(),
        dns_ttl_s=settings.agent_dns_ttl_s,
        keepalive_s=settings.agent_keepalive_s,
    )

    def close() -> None:
        agents.close()
        client.close()
        db.close()

    return Adapters(db=db, redis=client, agents=agents, close=close)


@dataclass
class Container:
    """Every service of one process, with the adapters under them."""

    settings: Settings
    adapters: Adapters
    monitoring: MonitoringService
    housekeeping: HousekeepingService
    activation: ActivationService
    storage: StorageService
    vmruns: VmRunService
    fleet: FleetService
    views: FleetViews
    safety: SafetyService
    intake: ReportIntake
    onboarding: OnboardingService
    retention: RetentionService
    agent_holds: AgentHoldService

    @property
    def db(self) -> Database:
        """The store the services use."""
        return self.adapters.db

    @property
    def redis(self) -> redis.Redis:
        """The Redis client of locks and tick state."""
        return self.adapters.redis

    @property
    def agents(self) -> AgentClient:
        """The agent client."""
        return self.adapters.agents

    def close(self) -> None:
        """Close the adapters (pool, Redis client, agent connections)."""
        self.adapters.close()


def no_queue(activation_id: str, object_id: str, trigger: str, actor: str) -> None:
    """An enqueuer for processes that queue no activations (registration, reads)."""
    raise BrokerUnavailable("this process cannot queue activations")


@dataclass(frozen=True)
class Tuning:
    """What unit tests set beside settings: the tick's config, recovery limits, the jitter's rng."""

    tick: TickConfig | None = None
    recovery: RecoverySafety | None = None
    rng: random.Random | None = None
    redis_ping: Callable[[], bool] | None = None
    wait: InitWait | None = None


def build_services(
    settings: Settings,
    adapters: Adapters,
    enqueue: Enqueuer = no_queue,
    enqueue_domain: Enqueuer = no_queue,
    tuning: Tuning = Tuning(),  # noqa: B008 - frozen
    send_batch: BatchSender | None = None,
    enqueue_check: CheckSender | None = None,
) -> Container:
    """Wire every service over ``adapters`` (real or fake)."""
    db, repos, clock, agents = adapters.db, adapters.repos, adapters.clock, adapters.agents
    tick = tuning.tick or tick_config(settings)
    wait = tuning.wait or InitWait(
        init_max_s=settings.init_max_s, poll_s=settings.init_poll_s, poll_max_s=settings.init_poll_max_s
    )
    storage = StorageService(
        db,
        adapters.lock,
        agents,
        enqueue_domain,
        clock=clock,
        lock_ttl_s=settings.lock_ttl_s,
        report_max_age_s=settings.report_max_age_s,
        repos=repos,
        hold_s=wait.init_max_s,
        poll_s=wait.poll_s,
    )
    fleet = FleetService(
        db,
        enqueue,
        report_max_age_s=settings.report_max_age_s,
        clock=clock,
        repos=repos,
        max_clock_skew_s=settings.max_clock_skew_s,
        agent_urls=settings.agent_url_policy(),
    )
    return Container(
        settings=settings,
        adapters=adapters,
        monitoring=MonitoringService(
            db,
            agents,
            enqueue,
            tick,
            clock,
            repos=repos,
            redis_ping=tuning.redis_ping or adapters.redis_ping,
            queue_domains=storage.queue_reachable,
            send_batch=send_batch,
        ),
        housekeeping=HousekeepingService(
            db,
            Reaper(db, agents, enqueue, tick.reaper, repos, enqueue_check=enqueue_check),
            clock,
            lease_s=settings.housekeeping_time_limit_s,
            repos=repos,
        ),
        activation=ActivationService(
            db,
            adapters.lock,
            agents,
            lock_ttl_s=settings.lock_ttl_s,
            report_max_age_s=settings.report_max_age_s,
            clock=clock,
            repos=repos,
            failpoints=settings.failpoints,
            wait=wait,
            safety=tuning.recovery or recovery_safety(settings),
            rng=tuning.rng,
        ),
        storage=storage,
        vmruns=VmRunService(db, clock, error_policy(settings), repos),
        fleet=fleet,
        views=FleetViews(
            db, report_max_age_s=settings.report_max_age_s, clock=clock, repos=repos, caps=tick.caps
        ),
        safety=SafetyService(db, clock, repos),
        intake=ReportIntake(db, clock, repos, max_clock_skew_s=settings.max_clock_skew_s),
        onboarding=OnboardingService(db, clock, fleet.register_hosts, repos),
        retention=RetentionService(db, clock, retention_policy(settings), repos),
        agent_holds=AgentHoldService(db, agents, clock, repos),
    )


def build(
    settings: Settings,
    enqueue: Enqueuer = no_queue,
    enqueue_domain: Enqueuer = no_queue,
    send_batch: BatchSender | None = None,
    enqueue_check: CheckSender | None = None,
) -> Container:
    """Connect the real adapters and build the container for one process.

    Without ``send_batch`` a tick runs its batches inline, in this process; without
    ``enqueue_check`` the housekeeping re-sends no lost check step.
    """
    return build_services(
        settings,
        connect(settings),
        enqueue,
        enqueue_domain,
        send_batch=send_batch,
        enqueue_check=enqueue_check,
    )
