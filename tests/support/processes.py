"""Real Celery worker and beat processes for the suite, with their logs kept for failures."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    """A child process and its log file."""

    popen: subprocess.Popen[bytes]
    log_path: Path
    name: str

    def log(self) -> str:
        """Return what the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def children(self) -> list[int]:
        """Return the pids of the process's direct children (prefork pool processes)."""
        path = Path(f"/proc/{self.popen.pid}/task/{self.popen.pid}/children")
        try:
            return [int(p) for p in path.read_text().split()]
        except OSError:
            return []

    def signal_all(self, sig: int) -> None:
        """Send ``sig`` to the process and its children."""
        for pid in [self.popen.pid, *self.children()]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop gracefully, then kill whatever is left of the process group."""
        if self.popen.poll() is None:
            self.signal_all(signal.SIGCONT)
            self.popen.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)


def spawn(args: list[str], env: dict[str, str], log_dir: Path, name: str) -> Proc:
    """Start ``args`` in its own process group with its output in ``log_dir/name.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{uuid.uuid4().hex[:6]}.log"
    out = log_path.open("wb")
    popen = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    out.close()
    return Proc(popen, log_path, name)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str,
             interval_s: float = 0.1) -> None:
    """Poll ``predicate`` until true, or fail saying what did not happen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def start_worker(
    env: dict[str, str], log_dir: Path, *, concurrency: int = 2, queues: str = "monitoring,activation",
    pool: str = "prefork", name: str = "worker", app: str = "workers",
) -> Proc:
    """Start ``celery -A <app> worker`` and wait until it says it is ready."""
    args = [
        sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues,
        "-c", str(concurrency), "-P", pool, "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h",
        "--without-gossip", "--without-mingle", "-l", "INFO",
    ]
    proc = spawn(args, env, log_dir, name)

    def ready() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"worker exited early:\n{proc.log()[-4000:]}")
        return " ready." in proc.log()

    wait_for(ready, 60, "the worker to be ready")
    return proc


def start_beat(env: dict[str, str], log_dir: Path, name: str = "beat") -> Proc:
    """Start ``celery -A workers beat`` with a schedule file of its own."""
    schedule = log_dir / f"{name}-{uuid.uuid4().hex[:6]}-schedule"
    args = [sys.executable, "-m", "celery", "-A", "workers", "beat", "-s", str(schedule),
            "-l", "INFO"]
    return spawn(args, env, log_dir, name)
