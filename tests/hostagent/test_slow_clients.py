"""1,000+ slow anonymous connections against a real agent process: authenticated reports still answered.

The agent runs with the shipped unit's open-file limit (1,024). A crowd of 1,100 sockets sends a
partial request head and waits, and is re-opened as the agent closes it, all through the test;
meanwhile the product's requests (a whole head at once, on a new connection each) must be
answered, every one, promptly.
"""

from __future__ import annotations

import os
import resource
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hostagent import AUTH, REPO, HostTree, agent_url
from tests.support.processes import Proc, spawn

CROWD = 1100
AGENT_NOFILE = 1024  # LimitNOFILE of deploy/systemd/autorecovery-agent.service
PARTIAL = b"GET /report HTTP/1.1\r\nHost: agent\r\nUser-Agent: slow"


@pytest.fixture
def agent(tree: HostTree, libvirt_uri: str, tmp_path: Path) -> Iterator[tuple[str, Proc]]:
    config = tree.write_config()
    config.write_text(config.read_text().replace("[server]\n", "[server]\nheader_timeout_s = 3.0\n"))
    shell = f'ulimit -n {AGENT_NOFILE} && exec "$0" "$@"'
    command = [
        "sh",
        "-c",
        shell,
        sys.executable,
        "-m",
        "cli",
        "agent",
        "--config",
        str(config),
        "--port",
        "0",
    ]
    proc = spawn(command, {**os.environ, "PYTHONPATH": str(REPO)}, tmp_path / "logs", "agent")
    try:
        yield agent_url(proc), proc
    finally:
        proc.stop()


class Crowd:
    """``size`` sockets that send a partial head and wait; re-opened when the agent closes them."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.socks: list[socket.socket | None] = [None] * size
        self.reopened = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _open(self) -> socket.socket | None:
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", self.port))
            sock.sendall(PARTIAL)
        except OSError:
            sock.close()
            return None
        sock.setblocking(False)
        return sock

    def _is_closed(self, sock: socket.socket) -> bool:
        try:
            return sock.recv(1024) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def fill(self) -> None:
        for i in range(self.size):
            self.socks[i] = self._open()

    def _hold(self) -> None:
        while not self.stop.is_set():
            for i, sock in enumerate(self.socks):
                if self.stop.is_set():
                    return
                if sock is None or self._is_closed(sock):
                    if sock is not None:
                        sock.close()
                    self.socks[i] = self._open()
                    self.reopened += 1
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        for sock in self.socks:
            if sock is not None:
                sock.close()


def test_authenticated_reports_are_answered_under_a_slow_anonymous_crowd(agent: tuple[str, Proc]) -> None:
    url, proc = agent
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < CROWD + 256:  # this test's own sockets, not the agent's
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    crowd = Crowd(int(url.rsplit(":", 1)[1]), CROWD)
    crowd.fill()
    crowd.thread.start()
    answered = []
    try:
        time.sleep(1.0)  # the crowd in place, the agent busy closing and re-accepting it
        for _ in range(13):
            started = time.monotonic()
            with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
                answer = client.get("/report")
            answered.append((answer.status_code, round(time.monotonic() - started, 2)))
            time.sleep(0.2)
    finally:
        crowd.close()
    print(f"answers (status, seconds): {answered}; crowd sockets re-opened: {crowd.reopened}")
    assert [status for status, _ in answered] == [200] * 13, answered
    assert max(seconds for _, seconds in answered) < 5.0, answered
    assert crowd.reopened > 0  # the agent did close slow connections
    assert proc.popen.poll() is None and "Traceback" not in proc.log()


def test_a_head_that_never_ends_is_closed_after_the_header_timeout(agent: tuple[str, Proc]) -> None:
    url, _ = agent
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(PARTIAL)
        started = time.monotonic()
        while True:  # a byte now and then: no keep-alive timer saves it
            try:
                sock.sendall(b"x")
            except OSError:
                break
            sock.settimeout(0.5)
            try:
                if sock.recv(1024) == b"":
                    break
            except TimeoutError:
                pass
            assert time.monotonic() - started < 8, "the slow head was never closed"
    assert 2.5 < time.monotonic() - started < 8
