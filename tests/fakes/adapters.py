"""Fake adapters for the composition root: the memory store, fakeredis, the fake agent client."""

from __future__ import annotations

from typing import Any

import fakeredis

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.bootstrap import Adapters, Container, Tuning, build_services, no_queue
from autorecovery.ports import CheckSender, Enqueuer
from autorecovery.services import Clock, utcnow
from autorecovery.services.monitoring import BatchSender, TickConfig
from autorecovery.settings import Settings
from tests.fakes.memory import MemoryDatabase
from tests.fakes.store import memory_repos

#: What the services read from settings in unit tests that do not say otherwise.
UNIT_SETTINGS = Settings(report_max_age_s=30.0, lock_ttl_s=40.0, tick_interval_s=10.0)


def fake_adapters(
    clock: Clock = utcnow, agents: FakeAgentClient | None = None, memory: MemoryDatabase | None = None
) -> Adapters:
    """Adapters over fakes only, for ``bootstrap.build_services`` in unit tests.

    ``memory`` shares one memory database between several sets of adapters (services whose
    clocks are skewed against the database's); by default a new one runs on ``clock``.
    """
    memory = memory or MemoryDatabase(clock=clock)  # the database's clock: no skew unless shared
    db: Any = memory  # stands in for autorecovery.adapters.store.Database
    redis_client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return Adapters(
        db=db,
        redis=redis_client,
        agents=agents or FakeAgentClient(),
        repos=memory_repos(memory),
        clock=clock,
        close=redis_client.close,
    )


def fake_container(
    memory: MemoryDatabase,
    clock: Clock,
    agents: FakeAgentClient,
    enqueue: Enqueuer = no_queue,
    *,
    tick: TickConfig | None = None,
    enqueue_domain: Enqueuer = no_queue,
    send_batch: BatchSender | None = None,
    settings: Settings = UNIT_SETTINGS,
    enqueue_check: CheckSender | None = None,
) -> Container:
    """Every service, built by the composition root over ``memory`` with a clock of its own."""
    adapters = fake_adapters(clock, agents, memory)
    return build_services(
        settings,
        adapters,
        enqueue,
        enqueue_domain,
        Tuning(tick=tick),
        send_batch=send_batch,
        enqueue_check=enqueue_check,
    )
