"""Children of ``autorecovery up``: started in their own sessions, stopped gracefully first."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console

from models.errors import PermanentError

STOP_TIMEOUT_S = 15.0


@dataclass
class Child:
    """A supervised child process."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Supervisor:
    """Starts children in their own sessions and stops them all, gracefully first."""

    log_dir: Path
    env: dict[str, str]
    console: Console
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> Child:
        """Start one child with its output in ``log_dir/name.log`` (``extra_env`` for it alone)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                args,
                env={**self.env, **(extra_env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise when a child has died."""
        for child in self.children:
            code = child.popen.poll()
            if code is not None:
                raise PermanentError(f"{child.name} exited with code {code}; see {child.log_path}")

    def wait_http(self, url: str, what: str, timeout_s: float) -> None:
        """Wait until ``url`` answers, while every child lives.

        Raises:
            PermanentError: a child died, or nothing answered in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check()
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            time.sleep(0.2)
        raise PermanentError(f"{what} did not answer at {url} within {timeout_s:.0f}s")

    def stop(self) -> None:
        """SIGTERM every child (workers finish their task), then SIGKILL what remains."""
        for child in reversed(self.children):
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.console.print(f"[yellow]{child.name} did not stop in time; killing it[/]")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.popen.pid, signal.SIGKILL)
            child.popen.wait()
