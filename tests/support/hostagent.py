"""A host agent for tests: a fake host tree (real files) on libvirt's test driver.

Use it to run the real agent in a test, in this process (``tests/hostagent/conftest.py``) or as
a process on a free port (``start_agent``), e.g. for a conformance or end-to-end test::

    tree = make_tree(tmp_path)                 # pools on real directories, /sys, /proc, token
    proc = start_agent(tree.write_config(), tmp_path / "logs")
    url = agent_url(proc)                      # http://127.0.0.1:<port>; send AUTH on each call
    ...
    proc.stop()

A ``test:///<file>`` node's state (pools, networks, domains) belongs to one libvirt connection:
another process cannot destroy the agent's pools; remove a pool's directory instead.
"""

from __future__ import annotations

import os
import pwd
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hostagent.config import AgentConfig, parse_config
from hostagent.persist import DiskStore
from tests.support.processes import REPO, Proc, spawn

NODE_TEMPLATE = Path(__file__).with_name("agent_node.xml")
TOKEN = "agent-test-token-0123456789abcdef"  # noqa: S105 - the tests' own token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme vmx sse4_2 avx\n\nprocessor\t: 1\n"
#: The tree's /dev/kvm is a file the test's user owns: QEMU's user, for the agent's kvm check.
QEMU_USER = pwd.getpwuid(os.getuid()).pw_name
MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1024000 kB\nMemAvailable:    8192000 kB\n"


def in_ci() -> bool:
    """True when the suite runs in CI, where a missing libvirt is a failure."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_libvirt() -> None:
    """Skip without libvirt-python, except in CI where it fails."""
    try:
        import libvirt  # noqa: F401
    except ImportError:
        pass
    else:
        return
    if in_ci():
        pytest.fail("libvirt-python is not installed: CI must run the agent tests (see .ci/run)")
    pytest.skip("libvirt-python is not installed (pip install 'autorecovery[agent]'); CI runs these tests")


@dataclass
class HostTree:
    """A host's files under a temporary root: /dev/kvm, /proc, /sys/class/net, pools, node.xml."""

    root: Path

    @property
    def uri(self) -> str:
        """The test-driver URI of this tree's node."""
        return f"test://{self.root / 'node.xml'}"

    def pool_dir(self, name: str) -> Path:
        """The target directory of pool ``pool-<name>``."""
        return self.root / "pools" / name

    def set_link(self, name: str, operstate: str = "up", carrier: str | None = "1") -> None:
        """Write an interface's operstate and carrier (None: unreadable, as a down link's is)."""
        base = self.root / "sys" / "class" / "net" / name
        base.mkdir(parents=True, exist_ok=True)
        (base / "operstate").write_text(operstate + "\n")
        carrier_file = base / "carrier"
        if carrier is None:
            carrier_file.unlink(missing_ok=True)
        else:
            carrier_file.write_text(carrier + "\n")

    def config(self, **overrides: Any) -> AgentConfig:
        """An agent config for this tree; ``overrides`` replace top-level keys or sections."""
        data: dict[str, Any] = {
            "host_id": "h-001",
            "state_dir": str(self.root / "state"),
            "token_file": str(self.root / "token"),
            "libvirt": {"uri": self.uri},
            "probes": {
                "kvm_device": str(self.root / "dev" / "kvm"),
                "cpuinfo": str(self.root / "proc" / "cpuinfo"),
                "meminfo": str(self.root / "proc" / "meminfo"),
                "sys_class_net": str(self.root / "sys" / "class" / "net"),
                "storage_timeout_s": 1.0,
                "qemu_user": QEMU_USER,
            },
            "networks": {
                "ovirtmgmt": {"libvirt_network": "ovirtmgmt", "interface": "eth0"},
                "vmnet": {"libvirt_network": "vmnet"},
                "storage": {"interface": "eth1"},
            },
            "storage_domains": {"sd-1": {"pool": "pool-sd1"}, "sd-2": {"pool": "pool-sd2"}},
            "init": {"cpu_flags": ["vmx"], "min_version": "4.5"},
            "version": "4.5.2",
        }
        data.update(overrides)
        return parse_config(data, self.root)

    def write_config(self, extra: str = "", host_id: str = "h-001") -> Path:
        """Write ``agent.toml`` in the tree for an agent process (``extra``: TOML lines appended)."""
        path = self.root / "agent.toml"
        path.write_text(
            f"""host_id = "{host_id}"
state_dir = "state"
token_file = "token"
version = "4.5.2"

[server]
bind = "127.0.0.1"
port = 0

[libvirt]
uri = "{self.uri}"

[probes]
qemu_user = "{QEMU_USER}"
kvm_device = "dev/kvm"
cpuinfo = "proc/cpuinfo"
meminfo = "proc/meminfo"
sys_class_net = "sys/class/net"

[networks.ovirtmgmt]
libvirt_network = "ovirtmgmt"
interface = "eth0"

[networks.vmnet]
libvirt_network = "vmnet"

[networks.storage]
interface = "eth1"

[storage_domains.sd-1]
pool = "pool-sd1"

[storage_domains.sd-2]
pool = "pool-sd2"

[init]
cpu_flags = ["vmx"]
min_version = "4.5"
{extra}"""
        )
        return path


def make_tree(root: Path) -> HostTree:
    """Lay out a healthy host under ``root``."""
    tree = HostTree(root)
    for sd in ("sd1", "sd2"):
        tree.pool_dir(sd).mkdir(parents=True)
        (tree.pool_dir(sd) / "disk.img").write_bytes(b"\0" * 16)
    (root / "dev").mkdir()
    (root / "dev" / "kvm").touch()
    (root / "proc").mkdir()
    (root / "proc" / "cpuinfo").write_text(CPUINFO)
    (root / "proc" / "meminfo").write_text(MEMINFO)
    tree.set_link("eth0")
    tree.set_link("eth1")
    (root / "node.xml").write_text(NODE_TEMPLATE.read_text().replace("@ROOT@", str(root)))
    token = root / "token"
    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    # Installed as an operator would: the agent's state created once (``--new-state``).
    (root / "state").mkdir(mode=0o700)
    DiskStore(root / "state").create()
    return tree


def start_agent(config: Path, log_dir: Path, name: str = "agent", *args: str) -> Proc:
    """Start ``autorecovery agent --config <config> --port 0`` as a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "cli",
        "agent",
        "--config",
        str(config),
        "--port",
        "0",
        *args,
    ]
    return spawn(command, env, log_dir, name)


def agent_url(proc: Proc, timeout_s: float = 20.0) -> str:
    """Wait for the agent's "listening on URL" line and return the URL."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in proc.log().splitlines():
            if " listening on " in line:
                return line.rsplit(" ", 1)[1].strip()
        if proc.popen.poll() is not None:
            raise AssertionError(f"the agent exited with {proc.popen.returncode}:\n{proc.log()}")
        time.sleep(0.05)
    raise AssertionError(f"the agent did not say where it listens:\n{proc.log()}")
