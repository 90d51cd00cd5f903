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
