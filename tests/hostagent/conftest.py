"""The agent's tests: a fake host tree per test (real files) and libvirt's test driver.

Tests that need libvirt-python take the ``libvirt_uri`` fixture: without libvirt-python they
skip on a developer's machine and FAIL in CI (``CI=true``), which installs it (see .ci/run).
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hostagent.config import AgentConfig, parse_config

NODE_TEMPLATE = Path(__file__).with_name("node.xml")
TOKEN = "agent-test-token-0123456789abcdef"  # noqa: S105 - the tests' own token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme vmx sse4_2 avx\n\nprocessor\t: 1\n"
MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1024000 kB\nMemAvailable:    8192000 kB\n"


def in_ci() -> bool:
    """True when the suite runs in CI, where a missing libvirt is a failure."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_libvirt() -> None:
    """Skip without libvirt-python, except in CI where it fails."""
    if importlib.util.find_spec("libvirt") is not None:
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
    return tree


@pytest.fixture
def tree(tmp_path: Path) -> HostTree:
    """A healthy host's files in a fresh temporary directory."""
    return make_tree(tmp_path)


@pytest.fixture
def libvirt_uri(tree: HostTree) -> str:
    """The tree's test-driver URI (skips or fails without libvirt-python, see the module doc)."""
    require_libvirt()
    return tree.uri


@dataclass
class RunningAgent:
    """An agent served over real HTTP by uvicorn in a thread of the test process."""

    url: str
    agent: Any  # hostagent.daemon.Agent
    hypervisor: Any  # hostagent.libvirt_hypervisor.LibvirtHypervisor

    def client(self, token: str = TOKEN, timeout_s: float = 20.0) -> httpx.Client:
        """An HTTP client with the agent's token."""
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s
        )

    @property
    def conn(self) -> Any:
        """The agent's own libvirt connection: faults go in through it.

        (A ``test:///file`` node's state belongs to one connection.)
        """
        return self.hypervisor.connection()


@contextmanager
def serve_agent(config: AgentConfig) -> Iterator[RunningAgent]:
    """Serve an agent built from ``config`` on a free loopback port until the block ends."""
    import uvicorn

    from hostagent.daemon import build_agent, listen
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    hypervisor = LibvirtHypervisor(config.libvirt.uri)
    agent = build_agent(config, hypervisor, TOKEN.encode())
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(agent.app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, "the agent's server to start")
    try:
        yield RunningAgent(f"http://127.0.0.1:{sock.getsockname()[1]}", agent, hypervisor)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        hypervisor.close()


@pytest.fixture
def running(tree: HostTree, libvirt_uri: str) -> Iterator[RunningAgent]:
    """An agent on the healthy tree, over HTTP."""
    with serve_agent(tree.config()) as agent:
        yield agent


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
