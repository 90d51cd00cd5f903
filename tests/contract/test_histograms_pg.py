"""Histogram observations on real PostgreSQL: two transactions observing at once never deadlock.

The reaper closes several activations in one statement (each observed in the duration histogram)
while a worker closes another. Both land in the same shard when their backends' pids agree
modulo 8, which the test arranges by picking two such connections.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from tests.support.servers import Servers

pytestmark = pytest.mark.integration

NAME = "autorecovery_activation_duration_seconds"


@pytest.fixture
def same_shard(pg_servers: Servers) -> Iterator[tuple[psycopg.Connection, psycopg.Connection]]:
    """Two connections whose backends write the same shard (pid % 8)."""
    opened: list[psycopg.Connection] = []
    by_shard: dict[int, psycopg.Connection] = {}
    pair = None
    while pair is None:
        conn = psycopg.connect(pg_servers.database_url)
        opened.append(conn)
        shard = conn.info.backend_pid % 8
        if shard in by_shard:
            pair = (by_shard[shard], conn)
        by_shard[shard] = conn
    yield pair
    for conn in opened:
        conn.close()


def observe(conn: psycopg.Connection, value: float) -> None:
    conn.execute("SELECT autorecovery_observe(%s, %s)", (NAME, value))


def test_a_transaction_observing_twice_does_not_deadlock_with_a_concurrent_one(
    same_shard: tuple[psycopg.Connection, psycopg.Connection],
) -> None:
    reaper, worker = same_shard
    errors: list[BaseException] = []
    observe(reaper, 100.0)  # the reaper's first closed activation: a long one

    def close() -> None:
        try:
            observe(worker, 0.4)  # a worker closes a short one meanwhile
            worker.commit()
        except psycopg.Error as exc:
            errors.append(exc)
            worker.rollback()

    thread = threading.Thread(target=close)
    thread.start()
    thread.join(0.5)  # it now waits on a row the reaper holds
    try:
        observe(reaper, 1.0)  # the reaper's second closed activation, same transaction
        reaper.commit()
    except psycopg.Error as exc:
        errors.append(exc)
        reaper.rollback()
    thread.join(10)
    assert errors == []
    with reaper.transaction():
        rows = reaper.execute(
            "SELECT le, sum(n) FROM metric_histogram_buckets WHERE name = %s GROUP BY le", (NAME,)
        ).fetchall()
    assert sum(int(n) for _, n in rows) >= 3
