"""No holder stuck mid-transaction holds the product's other sessions for good, on PostgreSQL.

A worker paused (or hung) inside a transaction keeps its row locks: without a bound, every tick
and step that needs those rows waits until the worker resumes or dies. A statement waits for a
lock at most ``lock_timeout_s``, then fails as ``StoreUnavailable``, which the callers retry;
the sessions also carry TCP keepalives on the server's side, so that PostgreSQL ends the
backend of a worker host gone without a word (its locks go with it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from autorecovery.adapters.store import Database
from autorecovery.adapters.store.db import SessionLimits
from autorecovery.bootstrap import session_limits
from autorecovery.settings import Settings
from models.errors import StoreUnavailable
from tests.support.servers import Servers

pytestmark = pytest.mark.integration



@pytest.fixture
def probe(pg_servers: Servers) -> Iterator[str]:
    """A one-row table of the test's own; its URL."""
    url = pg_servers.database_url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS session_limits_probe")
        conn.execute("CREATE TABLE session_limits_probe (id int PRIMARY KEY, v int NOT NULL)")
        conn.execute("INSERT INTO session_limits_probe VALUES (1, 0)")
    yield url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS session_limits_probe")


def _value(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT v FROM session_limits_probe WHERE id = 1").fetchone()
    assert row is not None
    return int(row[0])


def test_a_holder_paused_mid_transaction_makes_the_others_retry_not_hang(probe: str) -> None:
    frozen_db = Database(probe, max_size=1)
    other_db = Database(probe, max_size=1, limits=SessionLimits(lock_timeout_s=0.5))
    frozen_db.open(wait_s=10)
    other_db.open(wait_s=10)
    locked, release = threading.Event(), threading.Event()

    def freeze() -> None:
        with frozen_db.transaction() as conn:  # pipelined, as every transaction of the product
            conn.execute("UPDATE session_limits_probe SET v = 1 WHERE id = 1")
            conn.execute("SELECT 1").fetchone()  # sent: the row is locked
            locked.set()
            release.wait(30)  # a worker paused inside its transaction

    holder = threading.Thread(target=freeze)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="lock timeout"), other_db.transaction() as conn:
            conn.execute("UPDATE session_limits_probe SET v = 2 WHERE id = 1")
        waited_s = time.monotonic() - started
    finally:
        release.set()
        holder.join(15)
        frozen_db.close()
        other_db.close()
    assert waited_s < 3.0, f"the other writer waited {waited_s:.1f} s behind a paused holder"
    assert _value(probe) == 1, "the paused holder's transaction, once resumed, committed alone"


def test_a_lock_wait_ends_at_the_lock_timeout_as_store_unavailable(probe: str) -> None:
    db = Database(probe, max_size=1, limits=SessionLimits(lock_timeout_s=0.5))
    db.open(wait_s=10)
    try:
        with psycopg.connect(probe) as holder:  # another client, holding the row
            holder.execute("SELECT v FROM session_limits_probe WHERE id = 1 FOR UPDATE")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="lock timeout"), db.transaction() as conn:
                conn.execute("UPDATE session_limits_probe SET v = 3 WHERE id = 1")
            waited_s = time.monotonic() - started
            holder.rollback()
        assert waited_s < 3.0, f"waited {waited_s:.1f} s for a lock with a 0.5 s limit"
        with db.transaction() as conn:  # the lock gone, the same write goes through
            conn.execute("UPDATE session_limits_probe SET v = 3 WHERE id = 1")
    finally:
        db.close()
    assert _value(probe) == 3


def test_the_settings_reach_every_pooled_session(probe: str) -> None:
    db = Database(probe, max_size=1, limits=session_limits(Settings(db_lock_timeout_s=2.5)))
    db.open(wait_s=10)
    try:
        with db.transaction() as conn:
            row = conn.execute(
                "SELECT current_setting('lock_timeout') AS lock_timeout,"
                " current_setting('tcp_keepalives_idle') AS idle,"
                " current_setting('tcp_keepalives_count') AS count,"
                " current_setting('tcp_user_timeout') AS user_timeout"
            ).fetchone()
            over_tcp = not conn.info.host.startswith("/")
    finally:
        db.close()
    assert row is not None and row["lock_timeout"] == "2500ms"
    if over_tcp:  # over a Unix socket (the embedded server) PostgreSQL shows 0: no TCP to keep
        assert (row["idle"], row["count"], row["user_timeout"]) == ("10", "3", "30000")


def test_keepalives_set_in_the_url_win() -> None:
    mine = SessionLimits(dead_peer_s=30).connect_kwargs("postgresql://h/db?keepalives_idle=99")
    assert "keepalives_idle" not in mine
    assert mine["keepalives"] == 1 and mine["tcp_user_timeout"] == 30_000
    assert mine["keepalives_interval"] >= 1 and mine["keepalives_count"] == 3
    assert SessionLimits().connect_kwargs("dbname=x keepalives=0") == {
        k: v for k, v in SessionLimits().connect_kwargs("dbname=x").items() if k != "keepalives"
    }
