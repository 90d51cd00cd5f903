"""PostgreSQL store: pool, migrations and repositories (which take a connection, never commit).

Services reach the repositories through a ``Repos`` bundle (typed in ``autorecovery/ports``), so
that unit tests can hand them the in-memory fake (``tests/fakes``) and the same contract tests can
run against both.
"""

from __future__ import annotations

from autorecovery.adapters.store import activations, audit, hosts, retention, safety, storage, ticks, vmruns
from autorecovery.adapters.store.db import Database, migrate
from autorecovery.ports import Repos

PG_REPOS = Repos(
    hosts=hosts,
    activations=activations,
    audit=audit,
    safety=safety,
    storage=storage,
    vmruns=vmruns,
    ticks=ticks,
    retention=retention,
)

__all__ = ["PG_REPOS", "Database", "Repos", "migrate"]
