"""PostgreSQL store: pool, migrations and repositories (which take a connection, never commit).

Services reach the repositories through a ``Repos`` bundle, so that unit tests can hand them the
in-memory fake (``tests/fakes``) and the same contract tests can run against both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autorecovery.adapters.store import activations, audit, hosts, safety, storage, ticks, vmruns
from autorecovery.adapters.store.db import Database, migrate


@dataclass(frozen=True)
class Repos:
    """The repositories a service uses: each a module (PostgreSQL) or a fake object."""

    hosts: Any
    activations: Any
    audit: Any
    safety: Any
    storage: Any
    vmruns: Any
    ticks: Any


PG_REPOS = Repos(
    hosts=hosts,
    activations=activations,
    audit=audit,
    safety=safety,
    storage=storage,
    vmruns=vmruns,
    ticks=ticks,
)

__all__ = ["PG_REPOS", "Database", "Repos", "migrate"]
