"""Connection pool, transactions with translated errors, and numbered SQL migrations."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, LiteralString

import msgspec
import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from autorecovery.ports.rows import Conn as Conn  # the port owns the type
from models.errors import StoreUnavailable

log = logging.getLogger(__name__)



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

#: Seconds a failed connection is retried before the pool gives up on it (a new request retries).
RECONNECT_S = 2.0


def run(
    conn: Conn, query: LiteralString, params: dict[str, Any] | None = None
) -> psycopg.Cursor[dict[str, Any]]:
    """Execute one parameterised statement on ``conn`` and count it."""
    STATEMENTS.add()
    return conn.execute(query, params)


def affected(cur: psycopg.Cursor[Any]) -> int:
    """The rows the statement last executed on ``cur`` changed.

    In a pipeline (every ``transaction``) a statement's result arrives only when the client asks
    for one: this asks by reading a trivial statement sent after it (one round trip, the one a
    read would cost; inside BEGIN … COMMIT nothing is committed by it). Not ``Pipeline.sync()``:
    psycopg 3.3 stops sending once its queue is empty even when libpq still holds part of a large
    statement, then waits for results the server cannot send (seen: a 20 MB bulk push hung for
    good, the server in ``ClientRead``); a fetch flushes everything first.
    """
    conn = cur.connection
    if cur.rowcount < 0 and conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
        conn.execute("SELECT 1").fetchone()
    return cur.rowcount


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
    """JSON for a ``jsonb`` parameter; datetimes as RFC 3339 (a tick passes thousands as they are)."""
    try:
        return msgspec.json.encode(obj)
    except UnicodeEncodeError:  # a lone surrogate: PostgreSQL refuses it, as a DataError
        return json.dumps(obj, default=_iso)


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What bounds a session's waits, so that no stuck or vanished peer holds the fleet for good.

    ``lock_timeout_s``: a statement waits this long for a lock, then fails (``StoreUnavailable``,
    retried): a holder stuck inside its transaction (a worker paused mid-transaction, say) makes
    the others retry, not hang. 0 turns it off. (PostgreSQL's ``idle_in_transaction_session_timeout``
    would not help: the product's transactions are pipelined, and a session waiting mid-pipeline is
    never "idle in transaction" to the server; tried on PostgreSQL 15.)

    ``dead_peer_s``: both ends notice the other gone without a word (a host powered off, a
    partition) within about this long, through TCP keepalives and a TCP user timeout, instead of
    the kernel's two hours: PostgreSQL then ends the backend of a vanished worker, whose locks
    go with it, and a worker stops waiting for a vanished PostgreSQL. libpq's own ``keepalives*``
    and ``tcp_user_timeout``, when set in the URL, win on the client's side; over a Unix socket
    neither applies.
    """

    lock_timeout_s: float = 30.0
    dead_peer_s: int = 30

    @property
    def _keepalive(self) -> tuple[int, int, int]:
        """Idle seconds, interval seconds, probes: about ``dead_peer_s`` in all."""
        idle = max(1, self.dead_peer_s // 3)
        return idle, max(1, idle // 2), 3

    def connect_kwargs(self, conninfo: str) -> dict[str, Any]:
        """libpq's keepalive parameters (the client's side) that the URL does not set itself."""
        given = conninfo_to_dict(conninfo)
        idle, interval, count = self._keepalive
        wanted: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": idle,
            "keepalives_interval": interval,
            "keepalives_count": count,
            "tcp_user_timeout": self.dead_peer_s * 1000,
        }
        return {k: v for k, v in wanted.items() if k not in given}

    def apply(self, conn: Conn) -> None:
        """Set the session's limits and the server's side of the keepalives (one round trip, on
        each new connection), and commit. A setting the server does not have (``tcp_user_timeout``
        before PostgreSQL 12) is left out, not an error that would refuse every connection."""
        idle, interval, count = self._keepalive
        conn.execute(
            "SELECT set_config(v.name, v.value, false)"
            " FROM (VALUES ('lock_timeout', %s), ('tcp_keepalives_idle', %s),"
            " ('tcp_keepalives_interval', %s), ('tcp_keepalives_count', %s),"
            " ('tcp_user_timeout', %s)) AS v(name, value)"
            " JOIN pg_settings s ON s.name = v.name",
            (_ms(self.lock_timeout_s), str(idle), str(interval), str(count), str(self.dead_peer_s * 1000)),
        )
        conn.commit()


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _configured(extra: Callable[[Conn], None] | None, limits: SessionLimits) -> Callable[[Conn], None]:
    """Set up a new connection: its limits, JSON through msgspec (a tick reads and writes
    thousands of ``jsonb`` values; the standard library's codec was a tenth of a batch's CPU),
    then ``extra``.
    """

    def configure(conn: Conn) -> None:
        limits.apply(conn)
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
    """A psycopg pool; ``transaction()`` is the unit of work a service owns.

    The pool is built lazily in the process that uses it: one inherited through ``fork`` has
    no maintenance threads in the child and would never hand out a connection, so a process
    that finds the pool built by another process builds its own (the parent's is left alone:
    closing it here would close the parent's sockets).
    """

    def __init__(
        self,
        conninfo: str,
        *,
        max_size: int = 10,
        timeout_s: float = 10.0,
        reconnect_s: float = RECONNECT_S,
        connect_timeout_s: int = 5,
        configure: Callable[[Conn], None] | None = None,
        limits: SessionLimits = SessionLimits(),  # noqa: B008 - frozen
    ) -> None:
        """``configure`` runs on each new connection (tests and benchmarks trace the protocol)."""
        self.conninfo = conninfo
        self.limits = limits
        self.max_size = max_size
        self.timeout_s = timeout_s
        self.reconnect_s = reconnect_s
        self.connect_timeout_s = connect_timeout_s
        self.configure = configure
        self._pool: ConnectionPool[Conn] | None = None
        self._pid = 0

    def _new_pool(self) -> ConnectionPool[Conn]:
        # A short reconnect_timeout: psycopg_pool retries a failed connection with a doubling
        # delay until it gives up, so after a long outage its next attempt may come a minute
        # after PostgreSQL is back. Given up early, the next request starts a fresh attempt.
        return ConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=self.max_size,
            timeout=self.timeout_s,
            reconnect_timeout=self.reconnect_s,
            kwargs={
                "row_factory": dict_row,
                "connect_timeout": self.connect_timeout_s,
                **self.limits.connect_kwargs(self.conninfo),
            },
            open=False,
            check=_check_unless_fresh,
            reset=_mark_fresh,
            configure=_configured(self.configure, self.limits),
            name="autorecovery",
        )

    @property
    def pool(self) -> ConnectionPool[Conn]:
        """This process's pool, opened (without waiting) on first use after a fork."""
        if self._pool is None or self._pid != os.getpid():
            if self._pool is not None:
                log.info("process %s: pool built by process %s; building its own", os.getpid(), self._pid)
            self._pool = self._new_pool()
            self._pid = os.getpid()
            self._pool.open(wait=False)
        return self._pool

    def open(self, wait_s: float | None = None) -> None:
        """Open the pool; with ``wait_s``, wait until a connection works."""
        self._pool = self._new_pool()
        self._pid = os.getpid()
        self._pool.open(wait=wait_s is not None, timeout=wait_s or 30.0)

    def close(self) -> None:
        """Close every connection of the pool (only in the process that built it)."""
        if self._pool is not None and self._pid == os.getpid():
            self._pool.close()
        self._pool = None

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """Yield a connection inside one transaction: committed on success, rolled back on error.

        Its statements are pipelined (``pipeline(atomic=True)``): BEGIN goes with the first of
        them and COMMIT with the last, and a round trip is paid only where the block reads a
        result (a fetch, or ``affected``). A statement's error may surface at that read or at
        the end of the block instead of at the statement; either way nothing of it stays.

        Raises:
            StoreUnavailable: PostgreSQL could not be reached or dropped the connection.
        """
        with self.held() as held, self.pipeline(held, atomic=True) as conn:
            yield conn

    @contextmanager
    def autocommit(self) -> Iterator[Conn]:
        """Yield a connection whose statements each commit on their own: one round trip each.

        For reads that each need their result before the next (a pipeline would add a round
        trip to every one of them, and BEGIN … COMMIT two), and for single-statement writes;
        never for writes that must go together.

        Raises:
            StoreUnavailable: as ``transaction``.
        """
        with self.held() as conn:
            conn.autocommit = True
            try:
                yield conn
            finally:
                if not conn.closed:
                    conn.autocommit = False

    @contextmanager
    def held(self) -> Iterator[Conn]:
        """Hold one pooled connection for several ``pipeline`` blocks (one pool check for all).

        Raises:
            StoreUnavailable: as ``transaction``.
        """
        with _translated(), self._connection() as conn:
            yield conn

    @contextmanager
    def pipeline(self, conn: Conn, *, atomic: bool = False) -> Iterator[Conn]:
        """Send the statements of the block together: one round trip up to each read of a result.

        The statements up to a read (or the end of the block) run as one implicit transaction:
        all or nothing, like ``transaction``. Read what the block's statements return after it,
        or last inside it: reading earlier sends what was queued and starts a new transaction.
        With ``atomic`` the whole block is one transaction, reads inside it included: a row
        lock taken by its first statement holds until the block ends. Its BEGIN goes with the
        block's first statements and its COMMIT with the last (psycopg's ``transaction()`` would
        wait for each: two more round trips); a block that raises is rolled back.

        Raises:
            StoreUnavailable: as ``transaction``.
        """
        with _translated():
            conn.autocommit = True  # statements between syncs form the transaction, not BEGIN
            try:
                with conn.pipeline():
                    if atomic:
                        conn.execute("BEGIN")
                    yield conn
                    if atomic:
                        conn.execute("COMMIT")
            except BaseException:
                if atomic and not conn.closed:
                    with suppress(psycopg.Error):
                        conn.rollback()  # nothing of the block stays, whatever was sent
                raise
            finally:
                if not conn.closed:
                    conn.autocommit = False

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        # Asked in slices: each new request lets the pool start a new connection attempt once
        # the previous one gave up (after reconnect_s), so a returning PostgreSQL is found within
        # about a slice, not at the end of a long backoff.
        deadline = time.monotonic() + self.timeout_s
        while True:
            wait_s = min(self.reconnect_s, deadline - time.monotonic())
            try:
                conn = self.pool.getconn(timeout=max(wait_s, 0.01))
                break
            except PoolTimeout:
                if time.monotonic() >= deadline:
                    raise
        try:
            yield conn
        finally:
            self.pool.putconn(conn)

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
