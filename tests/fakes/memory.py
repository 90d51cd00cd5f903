"""The in-memory database the fake repositories share: its tables, transactions and checks.

``MemoryDatabase.transaction()`` snapshots the state on entry and restores it if the block
raises, so a service's unit of work commits or rolls back as one, as with PostgreSQL. Transactions
are serialised (one at a time), which is at least as strict as PostgreSQL's row locks.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from autorecovery.adapters.store.db import STATEMENTS
from models.errors import StoreUnavailable

IN_FLIGHT = ("queued", "sending", "sent")
#: The CHECK constraints of migration 0004, as the fake enforces them.
ALLOWED = {
    "hosts.status": frozenset(
        {"up", "initializing", "non_operational", "non_responsive", "error", "maintenance", "unassigned"}
    ),
    "activations.state": frozenset({"queued", "sending", "sent", "done", "failed", "skipped", "abandoned"}),
    "activations.answer": frozenset({"running", "unknown"}),
    "storage_domains.status": frozenset({"active", "inactive", "maintenance"}),
    "trigger": frozenset({"auto", "manual"}),
}
INT4_MAX = 2**31 - 1


@dataclass
class MemoryState:
    """Every table, as dictionaries of rows."""

    clusters: dict[str, dict[str, Any]] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    activations: dict[str, dict[str, Any]] = field(default_factory=dict)
    activation_steps: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    audit_seq: int = 0
    pauses: dict[str, dict[str, Any]] = field(default_factory=dict)
    observer: dict[str, Any] = field(
        default_factory=lambda: {
            "id": 1,
            "last_full_tick_at": None,
            "gate": None,
            "silent_hosts": 0,
            "observed_hosts": 0,
            "updated_at": None,
        }
    )
    incidents: dict[int, dict[str, Any]] = field(default_factory=dict)
    incident_seq: int = 0
    storage_domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    sd_activations: dict[str, dict[str, Any]] = field(default_factory=dict)
    vm_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    vm_run_seq: int = 0
    charges: dict[int, dict[str, Any]] = field(default_factory=dict)
    charge_seq: int = 0
    ticks: dict[str, dict[str, Any]] = field(default_factory=dict)
    housekeeping: dict[str, Any] = field(default_factory=lambda: {"holder": None, "until": None})


class MemoryConn:
    """The connection a memory transaction yields; unusable once its block has ended."""

    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db
        self.closed = False


class MemoryDatabase:
    """Stands in for ``autorecovery.adapters.store.Database``.

    Set ``unavailable`` to make every new transaction raise ``StoreUnavailable``. ``clock`` is
    the database server's clock (SQL ``now()``): the wall clock unless a test sets it, so that a
    test can skew the services' clock against it.
    """

    def __init__(self, clock: Callable[[], datetime] | None = None) -> None:
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.state = MemoryState()
        self.unavailable = False
        self.transactions = 0
        self.rollbacks = 0
        self._mutex = threading.Lock()
        self._owner: int | None = None

    @contextmanager
    def transaction(self) -> Iterator[MemoryConn]:
        """Yield a connection in one transaction: kept on success, rolled back if the block raises.

        Raises:
            StoreUnavailable: when ``unavailable`` is set.
            RuntimeError: on a nested transaction in one thread (a pool would hand out a second
                connection and could deadlock on row locks; no service does that).
        """
        if self.unavailable:
            raise StoreUnavailable("memory store set unavailable by the test")
        if self._owner == threading.get_ident():
            raise RuntimeError("nested transaction on the memory store")
        with self._mutex:
            self._owner = threading.get_ident()
            self.transactions += 1
            snapshot = copy.deepcopy(self.state)
            conn = MemoryConn(self)
            try:
                yield conn
            except BaseException:
                self.state = snapshot
                self.rollbacks += 1
                raise
            finally:
                conn.closed = True
                self._owner = None

    @contextmanager
    def held(self) -> Iterator[MemoryDatabase]:
        """Stands in for ``Database.held``: nothing to hold."""
        if self.unavailable:
            raise StoreUnavailable("memory store set unavailable by the test")
        yield self

    @contextmanager
    def autocommit(self) -> Iterator[MemoryConn]:
        """Stands in for ``Database.autocommit``: one transaction."""
        with self.transaction() as memory_conn:
            yield memory_conn

    @contextmanager
    def pipeline(self, conn: object, *, atomic: bool = False) -> Iterator[MemoryConn]:
        """Stands in for ``Database.pipeline``: one transaction (atomic or not)."""
        with self.transaction() as memory_conn:
            yield memory_conn

    def open(self, wait_s: float | None = None) -> None:
        """Nothing to open."""

    def close(self) -> None:
        """Nothing to close."""

    def ping(self) -> bool:
        """True unless set unavailable."""
        return not self.unavailable


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _strings(v)


def _check_plain(values: Sequence[Any]) -> None:
    """Refuse what psycopg refuses in a text parameter: NUL, and lone surrogates."""
    for text in _strings(list(values)):
        if "\x00" in text:
            raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        text.encode("utf-8")  # UnicodeEncodeError on a lone surrogate, as psycopg raises


def _check_json(values: Sequence[Any]) -> None:
    """Refuse what PostgreSQL refuses in ``jsonb``: NUL (as \\u0000), and lone surrogates."""
    for text in _strings(list(values)):
        if "\x00" in text:
            raise pg_errors.UntranslatableCharacter("unsupported Unicode escape sequence")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise pg_errors.InvalidTextRepresentation("invalid input syntax for type json") from exc


class Repo:
    """A fake repository over one memory database."""

    def __init__(self, db: MemoryDatabase) -> None:
        self._db = db

    def _state(self, conn: Any, plain: Sequence[Any] = (), jsonb: Sequence[Any] = ()) -> MemoryState:
        """Check the connection and the parameters as PostgreSQL would, count the statement.

        Args:
            plain: values sent as text parameters.
            jsonb: values sent inside a ``jsonb`` parameter.
        """
        if not isinstance(conn, MemoryConn) or conn.db is not self._db:
            raise TypeError(f"not a connection of this memory database: {conn!r}")
        if conn.closed:
            raise RuntimeError("connection used after its transaction ended")
        STATEMENTS.add()
        _check_json(jsonb)
        _check_plain(plain)
        return self._db.state


def check(column: str, value: str) -> None:
    """Refuse a value outside a column's CHECK constraint, as PostgreSQL does."""
    if value not in ALLOWED[column]:
        raise pg_errors.CheckViolation(f"new row for {column} violates check constraint: {value!r}")


def as_json(value: Any) -> Any:
    """Round-trip through JSON, as a ``jsonb`` column does."""
    return json.loads(json.dumps(value))


def add_audit(
    st: MemoryState,
    *,
    at: datetime,
    object_type: str,
    object_id: str,
    event: str,
    actor: str,
    reason: str | None,
    details: dict[str, Any] | None,
) -> None:
    """Append an audit entry, its details stored as ``jsonb`` would store them."""
    st.audit_seq += 1
    st.audit.append(
        {
            "id": st.audit_seq,
            "at": at,
            "object_type": object_type,
            "object_id": object_id,
            "event": event,
            "actor": actor,
            "reason": reason,
            "details": as_json(details or {}),
        }
    )


def in_flight_hosts(st: MemoryState) -> set[str]:
    """Hosts with a queued or running activation."""
    return {a["host_id"] for a in st.activations.values() if a["state"] in IN_FLIGHT}


def json_time(value: datetime | None) -> str | None:
    """Write a ``timestamptz`` as ``jsonb_build_object`` does in a UTC session."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    if value.microsecond:  # PostgreSQL drops the trailing zeros of the fraction
        head, _, tail = text.partition(".")
        fraction, _, offset = tail.partition("+")
        text = f"{head}.{fraction.rstrip('0')}+{offset}"
    return text


def text_time(value: datetime) -> str:
    """Write a ``timestamptz`` as ``::text`` does in a UTC session (``2026-11-24 12:00:00+00``)."""
    text = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text + "+00"
