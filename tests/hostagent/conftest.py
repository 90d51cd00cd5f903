"""The agent's tests: a fake host tree per test (real files) and libvirt's test driver.

Tests that need libvirt-python take the ``libvirt_uri`` fixture: without libvirt-python they
skip on a developer's machine and FAIL in CI (``CI=true``), which installs it (see .ci/run).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hostagent.config import AgentConfig
from tests.support.hostagent import TOKEN, HostTree, make_tree, require_libvirt
from tests.support.processes import wait_for


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
    agent.looks.start()
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(agent.app, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the agent's server to start", interval_s=0.02)
    try:
        yield RunningAgent(f"http://127.0.0.1:{sock.getsockname()[1]}", agent, hypervisor)
    finally:
        server.should_exit = True
        agent.looks.stop()
        thread.join(10)
        sock.close()
        hypervisor.close()


@pytest.fixture
def running(tree: HostTree, libvirt_uri: str) -> Iterator[RunningAgent]:
    """An agent on the healthy tree, over HTTP."""
    with serve_agent(tree.config()) as agent:
        yield agent
