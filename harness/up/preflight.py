"""What ``autorecovery up`` was asked for, checked before anything starts."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

from models.errors import InvalidInput


@dataclass
class UpOptions:
    """What ``autorecovery up`` was asked for.

    ``fresh``: reset the demo database first (None: yes for the embedded one, no for a database
    named by AUTORECOVERY_DATABASE_URL, which may hold more than a demo).
    ``clear_quarantine_after_s``: with chaos, the demo's admin clears a quarantine this long
    after it was set (``harness.up.operator``); 0 leaves quarantines in place.
    """

    hosts: int = 12
    clusters: int = 2
    chaos: bool = False
    duration_s: float | None = None
    data_dir: Path | None = None
    concurrency: int = 2
    sim_port: int = 0
    api_port: int | None = None
    seed: int | None = None
    fresh: bool | None = None
    flower: bool = False
    flower_port: int = 5555
    clear_quarantine_after_s: float = 30.0


def validate(opts: UpOptions) -> None:
    """Refuse counts that make no fleet.

    Raises:
        InvalidInput: naming the flag.
    """
    for name, value in (
        ("--hosts", opts.hosts),
        ("--clusters", opts.clusters),
        ("--concurrency", opts.concurrency),
    ):
        if value < 1:
            raise InvalidInput(name, "must be at least 1")
    if opts.clear_quarantine_after_s < 0:
        raise InvalidInput("--clear-quarantine-after", "must be 0 (never) or more seconds")
    if opts.clusters > opts.hosts:
        raise InvalidInput("--clusters", "must not exceed --hosts")


def require_free_port(host: str, port: int, flag: str) -> None:
    """Refuse a port something already listens on: we would talk to it, not to our child.

    Binds the port the way servers do (``SO_REUSEADDR``, so a closed connection's TIME_WAIT does
    not count) and lets it go at once.

    Raises:
        InvalidInput: naming ``flag``, the port and how to choose another.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise InvalidInput(flag, f"cannot bind {host}:{port}: {exc.strerror}") from exc
            raise InvalidInput(
                flag, f"port {port} on {host} is in use (another API or demo?); choose another with {flag}"
            ) from exc


def free_port() -> int:
    """A port the system says is free now, for a child that takes it right away."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
