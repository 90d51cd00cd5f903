"""Thin task entrypoints: ids in, a service call, exceptions mapped to retry or give up."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from celery import Task

from autorecovery.adapters import keys
from workers import ACTIVATION_TASK, STORAGE_TASK, TICK_TASK, app, container
from workers.base import ActivationTask

log = logging.getLogger(__name__)

LAST_TICK_TTL_S = 24 * 3600
TICK_HISTORY_LEN = 100


@app.task(  # type: ignore[untyped-decorator]
    name=TICK_TASK, bind=True, ignore_result=True
)
def monitoring_tick(self: Task) -> dict[str, Any]:
    """Run one monitoring tick over the fleet and publish its summary."""
    deps = container()
    summary = deps.monitoring.tick().as_dict()
    summary["task_id"] = self.request.id
    summary["finished_at"] = time.time()
    try:
        text = json.dumps(summary)
        with deps.redis.pipeline() as pipe:
            pipe.set(keys.last_tick(), text, ex=LAST_TICK_TTL_S)
            pipe.lpush(keys.tick_history(), text)
            pipe.ltrim(keys.tick_history(), 0, TICK_HISTORY_LEN - 1)
            pipe.expire(keys.tick_history(), LAST_TICK_TTL_S)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("cannot publish the tick summary: %s", exc)
    return summary


@app.task(  # type: ignore[untyped-decorator]
    name=ACTIVATION_TASK, bind=True, base=ActivationTask, object_kwarg="host_id", service_name="activation"
)
def init_vds_on_up(
    self: ActivationTask, host_id: str, activation_id: str, trigger: str = "auto", actor: str = "auto"
) -> dict[str, Any]:
    """Activate one host under its lock and fencing token."""
    return self.settle(lambda: container().activation.run(activation_id, host_id))


@app.task(  # type: ignore[untyped-decorator]
    name=STORAGE_TASK, bind=True, base=ActivationTask, object_kwarg="sd_id", service_name="storage"
)
def activate_storage_domain(
    self: ActivationTask, sd_id: str, activation_id: str, trigger: str = "auto", actor: str = "auto"
) -> dict[str, Any]:
    """Activate one storage domain under its lock and fencing token."""
    return self.settle(lambda: container().storage.run(activation_id, sd_id))
