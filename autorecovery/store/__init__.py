"""PostgreSQL store: pool, migrations and repositories (which take a connection, never commit)."""

from autorecovery.store.db import Database, migrate

__all__ = ["Database", "migrate"]
