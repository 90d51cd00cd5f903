"""The Celery app: ``celery -A workers worker`` and ``celery -A workers beat``.

JSON only, task events on, two queues (``monitoring`` and ``activation``). Each worker process
builds its own container (pool, Redis, agent client): a pool process of the prefork pool in
``worker_process_init``, a worker that runs its tasks in threads (``-P threads``, for the
activation queue: its steps wait on I/O) on its first task, once for all its threads.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import uuid
from typing import Any

from celery import Celery
from celery.concurrency import get_implementation
from celery.concurrency.prefork import TaskPool as PreforkPool
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_shutdown
from kombu.entity import Queue
from kombu.exceptions import OperationalError

from autorecovery.bootstrap import Container, build
from autorecovery.services.monitoring import BatchSpec
from autorecovery.settings import Settings, get_settings
from beat_schedule import beat_schedule
from models.errors import BrokerUnavailable
from workers.beat import beat_config

log = logging.getLogger(__name__)

MONITORING_QUEUE = "monitoring"
ACTIVATION_QUEUE = "activation"
TICK_TASK = "autorecovery.monitoring_tick"
BATCH_TASK = "autorecovery.monitoring_batch"
PRUNE_TASK = "autorecovery.prune"
HOUSEKEEPING_TASK = "autorecovery.housekeeping"
ACTIVATION_TASK = "autorecovery.init_vds_on_up"
CHECK_TASK = "autorecovery.check_init"
STORAGE_TASK = "autorecovery.activate_storage_domain"
STORAGE_CHECK_TASK = "autorecovery.check_storage_domain"
#: The tasks of an activation's steps: each has its own limits below the object's lock TTL.
STEP_TASKS = (ACTIVATION_TASK, CHECK_TASK, STORAGE_TASK, STORAGE_CHECK_TASK)


def make_app(settings: Settings) -> Celery:
    """Build the Celery app from settings (reads no network).

    Raises:
        InvalidInput: no broker URL is set (Celery would silently try amqp://guest@localhost).
    """
    broker_url = settings.require_broker_url()
    app = Celery("autorecovery", broker=broker_url, include=["workers.tasks"])
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        task_track_started=True,
        task_queues=(Queue(MONITORING_QUEUE), Queue(ACTIVATION_QUEUE)),  # type: ignore[no-untyped-call]
        task_default_queue=MONITORING_QUEUE,
        task_routes={
            TICK_TASK: {"queue": MONITORING_QUEUE},
            BATCH_TASK: {"queue": MONITORING_QUEUE},
            PRUNE_TASK: {"queue": MONITORING_QUEUE},
            HOUSEKEEPING_TASK: {"queue": MONITORING_QUEUE},
            **{task: {"queue": ACTIVATION_QUEUE} for task in STEP_TASKS},
        },
        task_annotations={
            **{
                task: {
                    "soft_time_limit": settings.activation_soft_limit_s,
                    "time_limit": settings.activation_time_limit_s,
                    "max_retries": settings.task_max_retries,
                }
                for task in STEP_TASKS
            },
            TICK_TASK: {
                # Ticks and their batches (thousands a day) stay out of Flower, so its bounded
                # task list keeps the activations; /metrics has the tick's age and duration.
                "send_events": False,
                "soft_time_limit": settings.tick_deadline_s,
                "time_limit": settings.tick_deadline_s + 10,
            },
            BATCH_TASK: {
                "send_events": False,
                "soft_time_limit": settings.tick_deadline_s,
                "time_limit": settings.tick_deadline_s + 10,
            },
            HOUSEKEEPING_TASK: {
                "send_events": False,
                "soft_time_limit": settings.tick_deadline_s,
                "time_limit": settings.housekeeping_time_limit_s,
            },
        },
        worker_prefetch_multiplier=1,
        worker_consumer="workers.consumer:BrokerLossConsumer",
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        beat_schedule=beat_schedule(settings.tick_interval_s),
        timezone="UTC",
        **beat_config(
            settings.redis_url or broker_url,
            settings.tick_interval_s,
            settings.beat_lock_timeout_s,
            settings.beat_heartbeat_path(),
        ),
    )
    return app


settings = get_settings()
app = make_app(settings)
_container: Container | None = None
_container_pid = 0
#: A worker running its tasks in threads builds one container for all of them.
_container_lock = threading.Lock()


def _send_activation(task: str, activation_id: str, target: dict[str, str], trigger: str, actor: str) -> None:
    """Send an activation task whose Celery task id is the activation id.

    The message expires when the housekeeping may send it again: a deep queue is not re-sent
    into duplicate runs, since the old message can no longer start.
    """
    try:
        app.send_task(
            task,
            kwargs={**target, "activation_id": activation_id, "trigger": trigger, "actor": actor},
            task_id=activation_id,
            queue=ACTIVATION_QUEUE,
            expires=settings.activation_message_ttl_s,
        )
    except OperationalError as exc:
        raise BrokerUnavailable(f"broker refused the {task} message: {exc}") from exc


def send_check(
    task: str,
    activation_id: str,
    target: dict[str, str],
    trigger: str,
    actor: str,
    countdown_s: float,
    task_id: str | None = None,
) -> str:
    """Send the next step of a sent activation (same kwargs as its first step), due in
    ``countdown_s``; return its task id (its own, listed as one of the activation's steps).

    ``task_id`` is the one the step recorded as the activation's next check (the only one that
    may act). The message expires ``activation_message_ttl_s`` after it is due, as an
    activation's first message does: a check the housekeeping sends again once none has run for
    a while is never run beside a late one.
    """
    task_id = task_id or str(uuid.uuid4())
    try:
        app.send_task(
            task,
            kwargs={**target, "activation_id": activation_id, "trigger": trigger, "actor": actor},
            task_id=task_id,
            queue=ACTIVATION_QUEUE,
            countdown=countdown_s,
            expires=countdown_s + settings.activation_message_ttl_s,
        )
    except OperationalError as exc:
        raise BrokerUnavailable(f"broker refused the {task} message: {exc}") from exc
    return task_id


def enqueue_activation(activation_id: str, host_id: str, trigger: str, actor: str) -> None:
    """Queue ``init_vds_on_up`` for a host."""
    _send_activation(ACTIVATION_TASK, activation_id, {"host_id": host_id}, trigger, actor)


def enqueue_check(activation_id: str, host_id: str, trigger: str, actor: str, task_id: str) -> None:
    """Send a host activation's check step at once under ``task_id`` (the housekeeping's re-send)."""
    send_check(CHECK_TASK, activation_id, {"host_id": host_id}, trigger, actor, 0.0, task_id)


def enqueue_storage_activation(activation_id: str, sd_id: str, trigger: str, actor: str) -> None:
    """Queue ``activate_storage_domain`` for a storage domain."""
    _send_activation(STORAGE_TASK, activation_id, {"sd_id": sd_id}, trigger, actor)


def send_monitoring_batch(spec: BatchSpec) -> None:
    """Send one batch of a tick to the pool; it expires when its tick would be taken over."""
    try:
        app.send_task(
            BATCH_TASK, kwargs=spec.as_dict(), queue=MONITORING_QUEUE, expires=settings.tick_deadline_s
        )
    except OperationalError as exc:
        raise BrokerUnavailable(f"broker refused a batch of tick {spec.tick_id}: {exc}") from exc


def container() -> Container:
    """Return this process's container, building it on first use.

    A container is never shared across a fork: a pool process that inherited one (built in the
    worker's parent) builds its own, since the inherited pool has no threads in it.
    """
    global _container, _container_pid
    found = _container
    if found is not None and _container_pid == os.getpid():
        return found
    with _container_lock:
        if _container is None or _container_pid != os.getpid():
            _container = build(
                settings,
                enqueue_activation,
                enqueue_storage_activation,
                send_batch=send_monitoring_batch,
                enqueue_check=enqueue_check,
            )
            _container_pid = os.getpid()
        return _container


def built_container() -> Container | None:
    """Return this process's container if it built one, else None (and build nothing).

    The worker's parent process runs failure handlers of tasks whose pool process was killed
    (hard time limit): it must not build a pool there, which the processes it forks afterwards
    would inherit.
    """
    return _container if _container_pid == os.getpid() else None


#: Net allocations of container objects between two young-generation collections (Python's
#: default is 700). A batch allocates and frees hundreds of thousands of short-lived objects
#: (requests, responses, rows): at 700 the collector ran about a thousand times a tick and
#: promoted them into full collections of the whole process, a third of the tick's CPU.
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Set the pool process's collector for batches: frozen start-up objects, rarer collections.

    What the process built at start (modules, the container, Celery) lives as long as it does:
    frozen, a full collection no longer walks it. Garbage in cycles is still collected, only
    after more allocations.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _init_process(**_: Any) -> None:
    _set_up_runner()
    container()
    tune_gc()


def _set_up_runner() -> None:
    # A worker sends a tick's batches (and the activations it queues) without a task-sent
    # event: Flower learns of an activation when a worker receives it, and its bounded task list
    # is not filled with batches.
    app.conf.task_send_sent_event = False


def runs_tasks_in_process(pool: Any) -> bool:
    """True for a pool that runs tasks in the worker's own process (threads, solo), not forked."""
    found = get_implementation(pool)
    return not (isinstance(found, type) and issubclass(found, PreforkPool))


def check_in_process_pool(concurrency: Any, db_pool_max: int) -> None:
    """Refuse a worker whose threads would wait for PostgreSQL connections of their own pool.

    Raises:
        SystemExit: naming the setting to raise, and to what.
    """
    if isinstance(concurrency, int) and concurrency > db_pool_max:
        raise SystemExit(
            f"AUTORECOVERY_DB_POOL_MAX is {db_pool_max} but this worker runs {concurrency} tasks "
            f"at once in one process: set AUTORECOVERY_DB_POOL_MAX to at least {concurrency}, or "
            "lower --concurrency"
        )


@worker_init.connect  # type: ignore[untyped-decorator]
def _init_worker(sender: Any = None, **_: Any) -> None:
    """A worker that runs its tasks in its own process is set up here (prefork: per process).

    Its container is built on the first task (never here, where a prefork worker would fork it).
    Celery's time limits do not apply in threads: the waits a step meets have their own bounds
    (agent and Redis timeouts, PostgreSQL's lock timeout and keepalives), and the record's lease
    and the lock's TTL bound what a stuck step holds (deploy/README.md).
    """
    if sender is None or not runs_tasks_in_process(sender.pool_cls):
        return
    solo = get_implementation(sender.pool_cls).__module__.endswith(".solo")  # one task at a time
    check_in_process_pool(1 if solo else sender.concurrency, settings.db_pool_max)
    _set_up_runner()
    tune_gc()


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _close_worker(**_: Any) -> None:
    """Close the container a worker built for its threads (a prefork parent built none)."""
    close_container()


def close_container() -> None:
    """Close this process's container if it built one (a forked copy is only forgotten)."""
    global _container
    if built_container() is not None:
        assert _container is not None
        _container.close()
    _container = None


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _close_process(**_: Any) -> None:
    close_container()
