"""A real ``libvirtd`` for tests: QEMU driver (``qemu:///system``) on its own socket directory.

The daemon runs as root with the machine's QEMU and Debian's packages (``.ci/run`` installs
them), on a socket of its own (``qemu:///system?socket=<dir>/libvirt-sock``) so that a test
never touches a libvirtd the machine may already run. The socket is open to the ``libvirt``
group with ``auth_unix_rw = "none"``: an unprivileged agent in that group needs neither D-Bus
nor polkitd (the packaged default, ``polkit``, needs both). ``virtlogd`` is started too when
none runs (libvirtd needs it to start QEMU domains; pools and networks do not).

Its pools and networks live in the system's state (``/etc/libvirt``, ``/run/libvirt``): every
name a test defines starts with ``PREFIX`` and is removed before and after the tier, and a file
lock lets one test session at a time use the daemon.

    with running_libvirtd(tmp_path, logs) as daemon:
        daemon.define_dir_pool("artest-kvm-a-sd1", tmp_path / "kvm-a-sd1")
        daemon.pause(); daemon.resume(); daemon.stop(); daemon.start()
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostagent import in_ci
from tests.support.processes import Proc, spawn, wait_for

PREFIX = "artest-"
LOCK_FILE = Path("/tmp/autorecovery-real-libvirtd.lock")  # noqa: S108 - one lock per machine


def require_real_libvirtd() -> None:
    """Skip without a libvirtd binary or root, except in CI where it fails."""
    import shutil as sh

    missing = [b for b in ("libvirtd", "qemu-system-x86_64") if sh.which(b) is None]
    why = ""
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install libvirt-daemon-system qemu-system-x86)"
    elif os.geteuid() != 0:
        why = "the real libvirtd tier runs libvirtd as root"
    if not why:
        return
    if in_ci():
        pytest.fail(f"real libvirtd tier: {why}; CI must run it (see .ci/run)")
    pytest.skip(f"real libvirtd tier: {why}")


class Libvirtd:
    """One libvirtd process with its own config and socket directory."""

    def __init__(self, root: Path, log_dir: Path) -> None:
        self.root = root
        self.log_dir = log_dir
        self.proc: Proc | None = None
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "libvirtd.conf"
        self.config.write_text(
            f'unix_sock_dir = "{root}"\n'
            'unix_sock_group = "libvirt"\n'
            'unix_sock_rw_perms = "0770"\n'
            'unix_sock_ro_perms = "0777"\n'
            'auth_unix_rw = "none"\n'
            'auth_unix_ro = "none"\n'
        )

    @property
    def uri(self) -> str:
        """The QEMU system driver on this daemon's socket."""
        return f"qemu:///system?socket={self.root}/libvirt-sock"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.popen.pid

    def start(self) -> None:
        """Start the daemon and wait until it answers."""
        self.proc = spawn(
            ["libvirtd", "--config", str(self.config), "--pid-file", str(self.root / "libvirtd.pid")],
            dict(os.environ),
            self.log_dir,
            "libvirtd",
        )
        wait_for(self._answers, 30, "libvirtd to answer")

    def _answers(self) -> bool:
        import libvirt

        import hostagent.libvirt_hypervisor  # noqa: F401 - silences libvirt's print of each error

        assert self.proc is not None
        if self.proc.popen.poll() is not None:
            raise AssertionError(f"libvirtd exited:\n{self.proc.log()[-3000:]}")
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return False
        conn.close()
        return True

    def stop(self) -> None:
        """Stop the daemon (SIGTERM), as ``systemctl stop libvirtd`` would."""
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def pause(self) -> None:
        """Hang the daemon: it accepts connections and answers nothing (SIGSTOP)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused daemon go on (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A connection of the test's own, to inject faults."""
        import libvirt

        conn = libvirt.open(self.uri)
        try:
            yield conn
        finally:
            conn.close()

    def define_dir_pool(self, name: str, path: Path) -> None:
        """Define and start a persistent ``dir`` pool on ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        xml = f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>"
        with self.connection() as conn:
            conn.storagePoolDefineXML(xml, 0).create(0)

    def define_isolated_network(self, name: str, bridge: str) -> None:
        """Define and start a persistent isolated network (no forward, no address: no dnsmasq)."""
        xml = f"<network><name>{name}</name><bridge name='{bridge}'/></network>"
        with self.connection() as conn:
            conn.networkDefineXML(xml).create()

    def clean(self) -> None:
        """Remove every pool and network this tier defined (``PREFIX``), running or not."""
        with self.connection() as conn:
            for pool in conn.listAllStoragePools(0):
                if pool.name().startswith(PREFIX):
                    with contextlib.suppress(Exception):
                        pool.destroy()
                    with contextlib.suppress(Exception):
                        pool.undefine()
            for net in conn.listAllNetworks(0):
                if net.name().startswith(PREFIX):
                    with contextlib.suppress(Exception):
                        net.destroy()
                    with contextlib.suppress(Exception):
                        net.undefine()


def _start_virtlogd(root: Path, log_dir: Path) -> Proc | None:
    if Path("/run/libvirt/virtlogd-sock").exists():
        return None  # one runs already
    return spawn(
        ["virtlogd", "--pid-file", str(root / "virtlogd.pid")], dict(os.environ), log_dir, "virtlogd"
    )


def _ensure_libvirt_group() -> None:
    import grp

    try:
        grp.getgrnam("libvirt")
    except KeyError:
        os.system("groupadd --system libvirt")  # noqa: S605, S607 - a fixed command, test setup


@contextlib.contextmanager
def running_libvirtd(root: Path, log_dir: Path) -> Iterator[Libvirtd]:
    """Start virtlogd (if none runs) and a libvirtd; clean the tier's objects before and after."""
    require_real_libvirtd()
    _ensure_libvirt_group()
    LOCK_FILE.touch(exist_ok=True)
    with LOCK_FILE.open("rb") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        virtlogd = _start_virtlogd(root, log_dir)
        daemon = Libvirtd(root, log_dir)
        daemon.start()
        try:
            daemon.clean()
            yield daemon
        finally:
            with contextlib.suppress(Exception):
                daemon.resume()
            with contextlib.suppress(Exception):
                if daemon.proc is None:
                    daemon.start()
                daemon.clean()
            daemon.stop()
            if virtlogd is not None:
                virtlogd.stop()
            time.sleep(0.1)
            shutil.rmtree(root, ignore_errors=True)
