"""Fake adapters for the composition root: the memory store, fakeredis, the fake agent client."""

from __future__ import annotations

from typing import Any

import fakeredis

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.bootstrap import Adapters
from autorecovery.services import Clock, utcnow
from tests.fakes.memory import MemoryDatabase
from tests.fakes.store import memory_repos


def fake_adapters(clock: Clock = utcnow, agents: FakeAgentClient | None = None) -> Adapters:
    """Adapters over fakes only, for ``bootstrap.build_services`` in unit tests."""
    memory = MemoryDatabase()
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
