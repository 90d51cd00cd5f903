"""Where ``autorecovery up`` runs: servers, a fresh or kept database, tokens, the children's environment."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import redis
from kombu.utils.url import sanitize_url
from psycopg import sql
from rich.console import Console

from api.auth import dev_token
from autorecovery.adapters.store import migrate
from autorecovery.settings import Settings
from harness.up.preflight import UpOptions

console = Console()  # one console for the whole run

#: Demo defaults (the operator's own settings win): a livelier loop than production's.
DEMO_SETTINGS = {
    "AUTORECOVERY_TICK_INTERVAL_S": "3",
    "AUTORECOVERY_ERROR_PERIOD_S": "45",
    "AUTORECOVERY_CHARGE_WINDOW_S": "300",
    "AUTORECOVERY_SD_INACTIVE_AFTER_S": "15",
}
FLOWER_AUTH_FILE = "flower_basic_auth"


@dataclass
class Ports:
    """The ports the children listen on."""

    api: int
    sim: int
    flower: int | None


def reset_database(database_url: str, redis_url: str, *, flush_redis: bool) -> None:
    """Drop every table of the demo's schema (migrations then rebuild it), and its Redis keys."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
        schema = sql.Identifier(row[0] if row else "public")
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(schema))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    if flush_redis:
        client = redis.Redis.from_url(redis_url)
        try:
            client.flushdb()
        finally:
            client.close()


def prepare_database(opts: UpOptions, database_url: str, redis_url: str, *, embedded: bool) -> None:
    """Start fresh (the default for the embedded database) or keep what earlier runs left; say which."""
    fresh = embedded if opts.fresh is None else opts.fresh
    if fresh:
        reset_database(database_url, redis_url, flush_redis=embedded)
        how = "the embedded one is reset at each start" if embedded else "reset as --fresh asks"
        console.print(f"demo database: fresh ({how}; --keep keeps the last run's hosts and holds)")
    else:
        why = "--keep" if opts.fresh is False else "AUTORECOVERY_DATABASE_URL names it; --fresh resets it"
        console.print(f"demo database: kept ({why}): earlier quarantines, holds and audit entries stay")
    applied = migrate(database_url)
    console.print(f"database ready ({len(applied)} migration(s) applied)")


def api_token(settings: Settings, data_dir: Path) -> tuple[str, str | None]:
    """Return the API tokens setting, creating an admin token file for the demo if none is set."""
    if settings.api_tokens:
        return settings.api_tokens, None
    token, path = dev_token(data_dir)
    return f"admin:admin:{token}", str(path)


def flower_auth(data_dir: Path) -> tuple[str, str | None]:
    """Flower's ``user:password``: FLOWER_BASIC_AUTH when set, else one kept in the data directory."""
    if os.environ.get("FLOWER_BASIC_AUTH"):
        return os.environ["FLOWER_BASIC_AUTH"], None
    path = data_dir / FLOWER_AUTH_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(f"admin:{secrets.token_urlsafe(24)}", encoding="utf-8")
    return path.read_text(encoding="utf-8").strip(), str(path)


def servers(settings: Settings, data_dir: Path) -> tuple[Settings, Any]:
    """The settings with database and Redis URLs: the operator's, else embedded servers'."""
    if settings.database_url and settings.redis_url:
        return settings, None
    from harness.embedded import start_embedded

    console.print(f"starting embedded PostgreSQL and Redis in {data_dir} …")
    embedded = start_embedded(data_dir)
    urls = {
        "database_url": settings.database_url or embedded.database_url,
        "redis_url": settings.redis_url or embedded.redis_url,
    }
    return settings.model_copy(update=urls), embedded


def child_env(settings: Settings, tokens: str, ports: Ports) -> dict[str, str]:
    env = dict(os.environ)
    for variable, default in DEMO_SETTINGS.items():
        env.setdefault(variable, default)
    env.update(
        AUTORECOVERY_DATABASE_URL=settings.database_url or "",
        AUTORECOVERY_REDIS_URL=settings.redis_url or "",
        AUTORECOVERY_BROKER_URL=settings.broker_url or settings.redis_url or "",
        AUTORECOVERY_API_TOKENS=tokens,
        AUTORECOVERY_API_PORT=str(ports.api),
        AUTORECOVERY_API_URL=f"http://127.0.0.1:{ports.api}",
    )
    return env


def broker_line(broker_url: str) -> str:
    """Name the broker with its password hidden (kombu's own sanitizer, as Celery logs it)."""
    return f"broker {sanitize_url(broker_url)}"
