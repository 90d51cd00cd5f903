"""Connection pool, transactions with translated errors, and numbered SQL migrations."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any, LiteralString

import msgspec
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from models.errors import StoreUnavailable

log = logging.getLogger(__name__)

Conn = psycopg.Connection[dict[str, Any]]


class StatementCounter:
    """Counts statements sent to PostgreSQL, for benchmarks and tests of round trips."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def add(self, n: int = 1) -> None:
        """Count ``n`` more statements."""
        with self._lock:
            self.count += n


STATEMENTS = StatementCounter()


def run(
    conn: Conn, query: LiteralString, params: dict[str, Any] | None = None
) -> psycopg.Cursor[dict[str, Any]]:
    """Execute one parameterised statement on ``conn`` and count it."""
    STATEMENTS.add()
    return conn.execute(query, params)


#: A pooled connection given back this recently is not checked again when taken (a round trip
#: saved on busy paths); one idle longer is, so a PostgreSQL restart while idle is noticed.
RECHECK_AFTER_S = 1.0
_FRESH: dict[int, float] = {}


def _check_unless_fresh(conn: Conn) -> None:
    if time.monotonic() - _FRESH.pop(id(conn), 0.0) < RECHECK_AFTER_S and not conn.broken:
        return
    ConnectionPool.check_connection(conn)


def _mark_fresh(conn: Conn) -> None:
    """Called as a connection goes back to the pool, after a block that used it without error."""
    _FRESH[id(conn)] = time.monotonic()


def _dumps(obj: Any) -> bytes | str:
    try:
        return msgspec.json.encode(obj)
    except UnicodeEncodeError:  # a lone surrogate: PostgreSQL refuses it, as a DataError
        return json.dumps(obj)


def _configured(extra: Callable[[Conn], None] | None) -> Callable[[Conn], None]:
    """Set up a new connection: JSON through msgspec (a tick reads and writes thousands of
    ``jsonb`` values; the standard library's codec was a tenth of a batch's CPU), then ``extra``.
    """

    def configure(conn: Conn) -> None:
        set_json_loads(msgspec.json.decode, conn)
        set_json_dumps(_dumps, conn)
        if extra is not None:
            extra(conn)

    return configure


@contextmanager
def _translated() -> Iterator[None]:
    """Turn the pool's and the driver's connection failures into StoreUnavailable."""
    try:
        yield
    except PoolTimeout as exc:
        raise StoreUnavailable(f"no PostgreSQL connection available: {exc}") from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"PostgreSQL failed: {exc}") from exc


class Database:
    """A psycopg pool; ``transaction()`` is the unit of work a service owns."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int = 10,
        timeout_s: float = 10.0,
        configure: Callable[[Conn], None] | None = None,
    ) -> None:
        """``configure`` runs on each new connection (tests and benchmarks trace the protocol)."""
        self.conninfo = conninfo
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            timeout=timeout_s,
            kwargs={"row_factory": dict_row},
            open=False,
            check=_check_unless_fresh,
            reset=_mark_fresh,
            configure=_configured(configure),
            name="autorecovery",
        )

    def open(self, wait_s: float | None = None) -> None:
        """Open the pool; with ``wait_s``, wait until a connection works."""
        self._pool.open(wait=wait_s is not None, timeout=wait_s or 30.0)

    def close(self) -> None:
        """Close every connection of the pool."""
        self._pool.close()

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """Yield a connection inside one transaction: committed on success, rolled back on error.

        Raises:
            StoreUnavailable: PostgreSQL could not be reached or dropped the connection.
        """
        with _translated(), self._pool.connection() as conn, conn.transaction():
            yield conn

    @contextmanager
    def held(self) -> Iterator[Conn]:
        """Hold one pooled connection for several ``pipeline`` blocks (one pool check for all).

        Raises:
            StoreUnavailable: as ``transaction``.
        """
        with _translated(), self._pool.connection() as conn:
            yield conn

    @contextmanager
    def pipeline(self, conn: Conn) -> Iterator[Conn]:
        """Send the statements of the block together: one round trip up to each read of a result.

        The statements up to a read (or the end of the block) run as one implicit transaction:
        all or nothing, like ``transaction``. Read what the block's statements return after it,
        or last inside it: reading earlier sends what was queued and starts a new transaction.

        Raises:
            StoreUnavailable: as ``transaction``.
        """
        with _translated():
            conn.autocommit = True  # statements between syncs form the transaction, not BEGIN
            try:
                with conn.pipeline():
                    yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = False

    def ping(self) -> bool:
        """Return True when PostgreSQL answers."""
        try:
            with self.transaction() as conn:
                run(conn, "SELECT 1")
            return True
        except StoreUnavailable:
            return False


_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def migration_files() -> list[tuple[int, str, str]]:
    """Return (version, name, sql) for every packaged migration, in order."""
    found = []
    folder = resources.files("autorecovery.adapters.store") / "migrations"
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text(encoding="utf-8")))
    return sorted(found)


def migrate(conninfo: str) -> list[str]:
    """Apply the migrations not yet recorded, each in its own transaction; safe to run twice.

    An advisory lock keeps two concurrent runs from applying the same migration.

    Returns:
        The names of the migrations applied now.
    """
    applied_now: list[str] = []
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext('autorecovery.migrate'))")
            try:
                conn.execute(_MIGRATIONS_TABLE)
                done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
                for version, name, sql in migration_files():
                    if version in done:
                        continue
                    with conn.transaction():
                        conn.execute(sql.encode())  # a packaged file, never user input
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (version, name),
                        )
                    log.info("applied migration %s", name)
                    applied_now.append(name)
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext('autorecovery.migrate'))")
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot migrate: PostgreSQL failed: {exc}") from exc
    return applied_now
