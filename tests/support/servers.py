"""Real PostgreSQL and Redis for the suite: the environment's URLs when set, else embedded.

Each session gets a database of its own and two Redis databases of its own (locks, broker), so
the suite never touches anything else on the servers.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from autorecovery.adapters.store import migrate


@dataclass
class Servers:
    """URLs the suite's processes use, and how to give them back."""

    database_url: str
    redis_url: str
    broker_url: str
    admin_url: str
    database: str
    embedded: object | None = None
    lease: tuple[str, str, str] | None = None  # (base Redis URL, lease key, token)

    def env(self, **overrides: str) -> dict[str, str]:
        """Environment for a subprocess of the product, with test-sized timings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORECOVERY_")}
        env.update(TEST_SETTINGS)
        env.update(
            AUTORECOVERY_DATABASE_URL=self.database_url,
            AUTORECOVERY_REDIS_URL=self.redis_url,
            AUTORECOVERY_BROKER_URL=self.broker_url,
        )
        env.update(overrides)
        return env

    def close(self) -> None:
        """Drop the session's database, flush its Redis databases, stop embedded servers."""
        for url in (self.redis_url, self.broker_url):
            client = redis.Redis.from_url(url)
            client.flushdb()
            client.close()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)
                )
            )
        if self.lease is not None:
            base, key, token = self.lease
            client = redis.Redis.from_url(base)
            if client.get(key) == token.encode():
                client.delete(key)
            client.close()
        stop = getattr(self.embedded, "stop", None)
        if stop is not None:
            stop()


#: Timings small enough for tests, kept in the order the settings validator wants.
TEST_SETTINGS = {
    "AUTORECOVERY_TICK_INTERVAL_S": "1",
    "AUTORECOVERY_REPORT_MAX_AGE_S": "5",
    "AUTORECOVERY_AGENT_TIMEOUT_S": "1",
    "AUTORECOVERY_INIT_TIMEOUT_S": "3",
    # An init whose outcome is not known holds its host this long; its agent is asked this often.
    "AUTORECOVERY_INIT_MAX_S": "10",
    "AUTORECOVERY_INIT_POLL_S": "0.3",
    "AUTORECOVERY_AGENT_RETRIES": "1",
    "AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S": "5",
    "AUTORECOVERY_ACTIVATION_TIME_LIMIT_S": "6",
    "AUTORECOVERY_LOCK_TTL_S": "8",
    "AUTORECOVERY_ACTIVATION_QUEUED_TTL_S": "20",
    "AUTORECOVERY_TASK_MAX_RETRIES": "3",
    # Tests send ticks by hand, far apart: the quiet period has a test of its own.
    "AUTORECOVERY_OBSERVER_QUIET_PERIOD": "false",
    # Caps have tests of their own; elsewhere a tick may activate every recoverable host.
    "AUTORECOVERY_CLUSTER_CAP": "100%",
    "AUTORECOVERY_FLEET_CAP": "1000",
}


def _with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


LEASE_TTL_S = 3 * 3600


def _lease_redis_pair(base_redis: str) -> tuple[int, tuple[str, str, str]]:
    """Take the first free pair of Redis databases (1-2, 3-4, … 13-14) for this session."""
    token = secrets.token_hex(8)
    client = redis.Redis.from_url(base_redis)
    try:
        for lock_db in range(1, 15, 2):
            key = f"autorecovery:test-lease:{lock_db}"
            if client.set(key, token, nx=True, ex=LEASE_TTL_S):
                return lock_db, (base_redis, key, token)
    finally:
        client.close()
    raise RuntimeError("every Redis database pair is leased by another test session")


def start_servers(tmp: Path) -> Servers:
    """Use AUTORECOVERY_DATABASE_URL / AUTORECOVERY_REDIS_URL when set, else embedded servers.

    A URL that is set but unreachable fails the session: a missing service is never a skip.
    """
    base_db = os.environ.get("AUTORECOVERY_DATABASE_URL")
    base_redis = os.environ.get("AUTORECOVERY_REDIS_URL")
    embedded = None
    if not base_db or not base_redis:
        from harness.embedded import start_embedded

        embedded = start_embedded(tmp / "embedded")
        base_db = base_db or embedded.database_url
        base_redis = base_redis or embedded.redis_url
    name = "ar_test_" + secrets.token_hex(4)
    with psycopg.connect(base_db, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(base_db)
    params["dbname"] = name
    database_url = make_conninfo(**params)  # type: ignore[arg-type]
    migrate(database_url)
    # Two Redis databases of our own: one for locks and tick summaries, one for the broker. A
    # lease in the base database keeps two sessions on one Redis from sharing a pair.
    lock_db, lease = _lease_redis_pair(base_redis)
    redis_url = _with_redis_db(base_redis, lock_db)
    broker_url = _with_redis_db(base_redis, lock_db + 1)
    for url in (redis_url, broker_url):
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
    return Servers(database_url, redis_url, broker_url, base_db, name, embedded, lease)
