"""The composition root: builds the pool, the Redis client, the agent client and the services.

Nothing connects at import time: Celery builds a container in each worker process, the API in
its lifespan, the CLI per command.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from autorecovery.adapters.agents.http import HttpAgentClient
from autorecovery.adapters.store import Database
from autorecovery.services import Enqueuer, utcnow
from autorecovery.services.activation import ActivationService, RecoverySafety
from autorecovery.services.monitoring import BatchSender, MonitoringService, TickConfig
from autorecovery.services.retention import RetentionPolicy, RetentionService
from autorecovery.services.storage import StorageService
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


@dataclass
class Container:
    """Every long-lived dependency of one process."""

    settings: Settings
    db: Database
    redis: redis.Redis
    agents: HttpAgentClient
    monitoring: MonitoringService
    activation: ActivationService
    storage: StorageService
    vmruns: VmRunService
    retention: RetentionService

    def close(self) -> None:
        """Close the pool, the Redis client and the agent connections."""
        self.agents.close()
        self.redis.close()
        self.db.close()


def _no_domain_queue(activation_id: str, sd_id: str, trigger: str, actor: str) -> None:
    raise BrokerUnavailable("this process cannot queue storage domain activations")


def build(
    settings: Settings,
    enqueue: Enqueuer,
    enqueue_domain: Enqueuer = _no_domain_queue,
    send_batch: BatchSender | None = None,
) -> Container:
    """Build the container for one process; without ``send_batch`` a tick runs its batches inline."""
    database_url, redis_url = require_urls(settings)
    db = Database(database_url, max_size=settings.db_pool_max)
    db.open()
    client = redis.Redis.from_url(
        redis_url, socket_timeout=5.0, socket_connect_timeout=5.0, health_check_interval=30
    )
    agents = HttpAgentClient(
        report_timeout_s=settings.agent_timeout_s,
        init_timeout_s=settings.init_timeout_s,
        concurrency=settings.agent_concurrency,
        retries=settings.agent_retries,
    )
    tick_cfg = TickConfig(
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
    )
    storage = StorageService(
        db,
        client,
        agents,
        enqueue_domain,
        clock=utcnow,
        lock_ttl_s=settings.lock_ttl_s,
        report_max_age_s=settings.report_max_age_s,
    )

    def redis_ping() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    return Container(
        settings=settings,
        db=db,
        redis=client,
        agents=agents,
        monitoring=MonitoringService(
            db,
            agents,
            enqueue,
            tick_cfg,
            utcnow,
            redis_ping=redis_ping,
            queue_domains=storage.queue_reachable,
            send_batch=send_batch,
        ),
        storage=storage,
        vmruns=VmRunService(db, utcnow, error_policy(settings)),
        retention=RetentionService(db, utcnow, retention_policy(settings)),
        activation=ActivationService(
            db,
            client,
            agents,
            lock_ttl_s=settings.lock_ttl_s,
            report_max_age_s=settings.report_max_age_s,
            clock=utcnow,
            failpoints=settings.failpoints,
            safety=RecoverySafety(
                backoff_base_s=settings.tick_interval_s,
                backoff_max_s=settings.backoff_max_s,
                flap_limit=settings.flap_limit,
                flap_window_s=settings.flap_window_s,
            ),
        ),
    )
