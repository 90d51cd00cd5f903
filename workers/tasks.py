"""Thin task entrypoints: ids in, a service call, exceptions mapped to retry or give up."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from celery import Task

from autorecovery.adapters import keys
from autorecovery.services.monitoring import BatchSpec
from workers import (
    ACTIVATION_TASK,
    BATCH_TASK,
    CHECK_TASK,
    HOUSEKEEPING_TASK,
    PRUNE_TASK,
    STORAGE_CHECK_TASK,
    STORAGE_TASK,
    TICK_TASK,
    app,
    container,
)
from workers.base import ActivationTask

log = logging.getLogger(__name__)

LAST_TICK_TTL_S = 24 * 3600
TICK_HISTORY_LEN = 100


def publish_tick(client: redis.Redis, summary: dict[str, Any], *, last: bool) -> None:
    """Publish a tick's summary: in the history always, as the last tick when it ran."""
    summary = {**summary, "finished_at": time.time()}
    try:
        text = json.dumps(summary)
        with client.pipeline() as pipe:
            if last:
                pipe.set(keys.last_tick(), text, ex=LAST_TICK_TTL_S)
            pipe.lpush(keys.tick_history(), text)
            pipe.ltrim(keys.tick_history(), 0, TICK_HISTORY_LEN - 1)
            pipe.expire(keys.tick_history(), LAST_TICK_TTL_S)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("cannot publish the summary of tick %s: %s", summary.get("tick_id"), exc)


@app.task(  # type: ignore[untyped-decorator]
    name=TICK_TASK, bind=True, ignore_result=True
)
def monitoring_tick(self: Task) -> dict[str, Any]:
    """Claim this interval's tick and send its batches to the pool (a duplicate stops here)."""
    deps = container()
    result = deps.monitoring.tick(self.request.id)
    summary = {**result.as_dict(), "task_id": self.request.id}
    if result.skipped is not None:
        publish_tick(deps.redis, summary, last=False)
    elif result.batches == 0:  # an empty fleet: the coordinator closed the tick itself
        publish_tick(deps.redis, summary, last=True)
    return summary


@app.task(  # type: ignore[untyped-decorator]
    name=BATCH_TASK, bind=True, ignore_result=True, acks_late=True, reject_on_worker_lost=True
)
def monitoring_batch(self: Task, tick_id: str, idx: int, lo: str, hi: str | None) -> dict[str, Any] | None:
    """Pull, store, transition and decide one batch; the batch that completes its tick closes it."""
    deps = container()
    result = deps.monitoring.run_batch(BatchSpec(tick_id, idx, lo, hi))
    if result is None:
        return None
    summary = {**result.as_dict(), "task_id": tick_id}
    publish_tick(deps.redis, summary, last=True)
    return summary


@app.task(  # type: ignore[untyped-decorator]
    name=HOUSEKEEPING_TASK, bind=True, ignore_result=True
)
def housekeeping(self: Task) -> dict[str, Any]:
    """Reap stuck activations, re-send lost ones, push fences; a run already going stops this one."""
    deps = container()
    summary = {**deps.housekeeping.run(self.request.id).as_dict(), "finished_at": time.time()}
    try:
        deps.redis.set(keys.last_housekeeping(), json.dumps(summary), ex=LAST_TICK_TTL_S)
    except redis.RedisError as exc:
        log.warning("cannot publish the summary of housekeeping %s: %s", self.request.id, exc)
    return summary


@app.task(  # type: ignore[untyped-decorator]
    name=ACTIVATION_TASK,
    bind=True,
    base=ActivationTask,
    object_kwarg="host_id",
    service_name="activation",
    check_task=CHECK_TASK,
)
def init_vds_on_up(
    self: ActivationTask, host_id: str, activation_id: str, trigger: str = "auto", actor: str = "auto"
) -> dict[str, Any]:
    """First step of a host's activation: its lock and fence, re-check, send the init."""
    return self.settle(lambda: container().activation.run(activation_id, host_id, self.request.id))


@app.task(  # type: ignore[untyped-decorator]
    name=CHECK_TASK,
    bind=True,
    base=ActivationTask,
    object_kwarg="host_id",
    service_name="activation",
    check_task=CHECK_TASK,
)
def check_init(
    self: ActivationTask, host_id: str, activation_id: str, trigger: str = "auto", actor: str = "auto"
) -> dict[str, Any]:
    """A later step of a host's activation: ask how its init went, close it, or ask again later."""
    return self.settle(lambda: container().activation.check(activation_id, host_id, self.request.id))


@app.task(  # type: ignore[untyped-decorator]
    name=STORAGE_TASK,
    bind=True,
    base=ActivationTask,
    object_kwarg="sd_id",
    service_name="storage",
    check_task=STORAGE_CHECK_TASK,
)
def activate_storage_domain(
    self: ActivationTask, sd_id: str, activation_id: str, trigger: str = "auto", actor: str = "auto"
) -> dict[str, Any]:
    """First step of a storage domain's activation: its lock and fence, re-check, connect."""
    return self.settle(lambda: container().storage.run(activation_id, sd_id, self.request.id))


@app.task(  # type: ignore[untyped-decorator]
    name=STORAGE_CHECK_TASK,
    bind=True,
    base=ActivationTask,
    object_kwarg="sd_id",
    service_name="storage",
    check_task=STORAGE_CHECK_TASK,
)
def check_storage_domain(
    self: ActivationTask, sd_id: str, activation_id: str, trigger: str = "auto", actor: str = "auto"
) -> dict[str, Any]:
    """A later step of a storage domain's activation: close a sent connect at its deadline."""
    return self.settle(lambda: container().storage.check(activation_id, sd_id, self.request.id))


@app.task(name=PRUNE_TASK, ignore_result=True)  # type: ignore[untyped-decorator]
def prune() -> dict[str, Any]:
    """Delete history past its retention (beat sends this daily); audited as one summary."""
    return container().retention.prune()
