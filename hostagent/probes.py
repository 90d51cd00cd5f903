"""Probes of the host's own files: /dev/kvm, /proc/cpuinfo, /proc/meminfo, /sys/class/net, paths.

Every path is an argument, so tests point them at temporary files. A probe of a storage path
runs in a daemon thread with a timeout: a hung NFS mount answers "unreachable" and never hangs
the agent (the thread stays stuck in the kernel, but only one per path at a time).
"""

from __future__ import annotations

import os
import pwd
import stat
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Check:
    """One probe's answer: whether the object is fine, and if not, why."""

    ok: bool
    detail: str = ""


OK = Check(True)


def has_kvm_device(path: Path) -> bool:
    """True when the kvm device exists."""
    return path.exists()


def kvm_device_problem(path: Path, qemu_user: str) -> str | None:
    """Why QEMU cannot use the kvm device, or None when it can.

    The device must exist, and ``qemu_user`` (QEMU's user in qemu.conf; empty: not checked)
    must be allowed to open it read-write by its mode, owner and group (ACLs are not read).
    """
    try:
        info = path.stat()
    except OSError as exc:
        return f"{path} is missing (kvm module not loaded?)" if isinstance(exc, FileNotFoundError) else (
            f"{path}: {exc.strerror or exc}"
        )
    if not qemu_user:
        return None
    try:
        user = pwd.getpwnam(qemu_user)
    except KeyError:
        return f"QEMU's user {qemu_user} does not exist on this host (probes.qemu_user)"
    if user.pw_uid == 0:
        return None
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid == user.pw_uid:
        allowed = mode & 0o600 == 0o600
    elif info.st_gid in os.getgrouplist(qemu_user, user.pw_gid):
        allowed = mode & 0o060 == 0o060
    else:
        allowed = mode & 0o006 == 0o006
    if allowed:
        return None
    return (
        f"{path} (mode {mode:04o}, owner {info.st_uid}, group {info.st_gid}) cannot be opened "
        f"read-write by QEMU's user {qemu_user}"
    )


def read_cpu_flags(path: Path) -> frozenset[str] | None:
    """The CPU flags of ``/proc/cpuinfo`` (x86 ``flags`` or arm ``Features``); None when unreadable."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def read_mem_available_mb(path: Path) -> int:
    """MemAvailable of ``/proc/meminfo`` in MiB (0 when it cannot be read)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "MemAvailable":
            fields = value.split()
            return int(fields[0]) // 1024 if fields and fields[0].isdigit() else 0
    return 0


def _read_sys(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:  # carrier reads EINVAL while the interface is administratively down
        return None


def check_interface(sys_class_net: Path, name: str) -> Check:
    """Whether interface ``name`` is up with a carrier, from ``/sys/class/net/<name>``."""
    base = sys_class_net / name
    if not base.is_dir():
        return Check(False, f"interface {name} not found")
    operstate = _read_sys(base / "operstate") or "unknown"
    carrier = _read_sys(base / "carrier")
    # Bridges and virtual links often say "unknown"; their carrier then tells.
    if operstate not in ("up", "unknown"):
        return Check(False, f"interface {name} is {operstate}")
    if carrier != "1":
        return Check(False, f"interface {name} has no carrier")
    return OK


def probe_directory(path: Path) -> Check:
    """Whether a storage path answers: statvfs, then read its first directory entry."""
    try:
        os.statvfs(path)
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as exc:
        return Check(False, f"{path}: {exc.strerror or exc}")
    return OK


class Bounded(Generic[K, T]):
    """Runs calls in daemon threads and waits for each at most ``timeout_s``.

    A call still stuck from an earlier time is not started again under the same key: its key
    answers "no answer" at once until it returns, so a hung mount or a hung libvirtd costs one
    thread, not one per report. Daemon threads: a thread stuck in the kernel never blocks exit.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pending: dict[K, Future[T]] = {}

    def run_all(self, calls: Mapping[K, Callable[[], T]]) -> dict[K, T | None]:
        """Run every call at once; None for each that did not answer in time.

        Raises:
            Whatever a call raised (the first in ``calls`` order).
        """
        futures = {key: self._start(key, call) for key, call in calls.items()}
        deadline = time.monotonic() + self.timeout_s
        answers: dict[K, T | None] = {}
        for key, future in futures.items():
            try:
                answers[key] = future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                answers[key] = None
        return answers

    def _start(self, key: K, call: Callable[[], T]) -> Future[T]:
        with self._lock:
            pending = self._pending.get(key)
            if pending is not None:
                return pending
            future: Future[T] = Future()
            self._pending[key] = future
        threading.Thread(
            target=self._run, args=(key, call, future), name=f"bounded {key}", daemon=True
        ).start()
        return future

    def _run(self, key: K, call: Callable[[], T], future: Future[T]) -> None:
        try:
            result = call()
        except BaseException as exc:  # handed to the waiting caller, who decides
            with self._lock:
                self._pending.pop(key, None)
            future.set_exception(exc)
            return
        with self._lock:
            self._pending.pop(key, None)
        future.set_result(result)


class BoundedProber:
    """Probes storage paths, each answer within ``timeout_s`` (see ``Bounded``)."""

    def __init__(self, timeout_s: float, probe: Callable[[Path], Check] = probe_directory) -> None:
        self.timeout_s = timeout_s
        self._probe = probe
        self._bounded: Bounded[Path, Check] = Bounded(timeout_s)

    def check(self, path: Path) -> Check:
        """Probe ``path``; unreachable when the probe does not answer in time."""
        return self.check_all([path])[path]

    def check_all(self, paths: Iterable[Path]) -> dict[Path, Check]:
        """Probe every path at once; the whole call takes at most about ``timeout_s``."""
        calls = {path: partial(self._safe_probe, path) for path in paths}
        answers = self._bounded.run_all(calls)
        late = f"no answer within {self.timeout_s:g}s (hung mount?)"
        return {path: answers[path] or Check(False, f"{path}: {late}") for path in calls}

    def _safe_probe(self, path: Path) -> Check:
        try:
            return self._probe(path)
        except Exception as exc:  # a probe must answer, whatever it met
            return Check(False, f"{path}: {exc}")
