"""A worker pool process tunes its garbage collector once its container is built."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def workers_module(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # As tests/unit/activation/test_tasks.py: alone, the app gets kombu's in-memory broker.
    if "workers" not in sys.modules and not (
        os.environ.get("AUTORECOVERY_BROKER_URL") or os.environ.get("AUTORECOVERY_REDIS_URL")
    ):
        monkeypatch.setenv("AUTORECOVERY_BROKER_URL", "memory://")
    import workers

    thresholds = gc.get_threshold()
    try:
        yield workers
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_a_pool_process_freezes_what_it_built_and_collects_less_often(
    workers_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    monkeypatch.setattr(workers_module, "container", lambda: built.append("container"))
    monkeypatch.setitem(workers_module.app.conf, "task_send_sent_event", True)
    gen1, gen2 = gc.get_threshold()[1:]
    workers_module._init_process()
    assert built == ["container"]
    assert gc.get_freeze_count() > 0  # the container (built before) is frozen
    assert gc.get_threshold() == (workers_module.GC_GEN0_THRESHOLD, gen1, gen2)
    assert gc.isenabled()  # cycles are still collected


def _pool_max(workers_module: Any, monkeypatch: pytest.MonkeyPatch, size: int) -> None:
    changed = workers_module.settings.model_copy(update={"db_pool_max": size})
    monkeypatch.setattr(workers_module, "settings", changed)


class _Worker:
    """What ``worker_init`` hands its handlers: the pool as named or resolved, the concurrency."""

    def __init__(self, pool_cls: Any, concurrency: Any) -> None:
        self.pool_cls, self.concurrency = pool_cls, concurrency


def test_a_worker_in_threads_is_set_up_in_its_own_process_and_builds_nothing_there(
    workers_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[str] = []
    monkeypatch.setattr(workers_module, "container", lambda: built.append("container"))
    _pool_max(workers_module, monkeypatch, 8)
    monkeypatch.setitem(workers_module.app.conf, "task_send_sent_event", True)
    workers_module._init_worker(sender=_Worker("threads", 8))
    assert workers_module.app.conf.task_send_sent_event is False
    assert gc.get_threshold()[0] == workers_module.GC_GEN0_THRESHOLD
    assert built == [], "the container is built by the first task, not at start"


@pytest.mark.parametrize("pool", ["prefork", "processes"])
def test_a_prefork_worker_is_left_to_its_pool_processes(
    workers_module: Any, monkeypatch: pytest.MonkeyPatch, pool: str
) -> None:
    _pool_max(workers_module, monkeypatch, 1)
    monkeypatch.setitem(workers_module.app.conf, "task_send_sent_event", True)
    workers_module._init_worker(sender=_Worker(pool, 16))  # no refusal: each process has its pool
    assert workers_module.app.conf.task_send_sent_event is True


def test_a_worker_with_more_threads_than_connections_is_refused_with_what_to_do(
    workers_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pool_max(workers_module, monkeypatch, 3)
    with pytest.raises(SystemExit, match="set AUTORECOVERY_DB_POOL_MAX to at least 16"):
        workers_module._init_worker(sender=_Worker("threads", 16))
    workers_module._init_worker(sender=_Worker("solo", 16))  # one task at a time, whatever -c says
    workers_module.check_in_process_pool(3, 3)  # as many: fine
    workers_module.check_in_process_pool("auto", 3)  # resolved later by Celery: not judged here


def test_threads_racing_for_the_first_container_build_one(
    workers_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    builds: list[int] = []

    def slow_build(*_: Any, **__: Any) -> object:
        builds.append(threading.get_ident())
        time.sleep(0.05)
        return object()

    monkeypatch.setattr(workers_module, "build", slow_build)
    monkeypatch.setattr(workers_module, "_container", None)
    got: list[object] = []
    racers = [threading.Thread(target=lambda: got.append(workers_module.container())) for _ in range(8)]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert len(builds) == 1 and len(got) == 8 and len({id(c) for c in got}) == 1
