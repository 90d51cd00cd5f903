"""The agent keeps an idle connection ``keepalive_s`` for the product's next pull, past the header timeout.

A real uvicorn server on the agent's guarded h11 protocol (as ``hostagent.daemon.run`` builds it),
in a thread; raw sockets stand for the product's kept-alive connection and a slow client.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from hostagent.http_server import ConnectionLimits, guarded_protocol

HEADER_TIMEOUT_S = 0.5
KEEPALIVE_S = 2.0
REQUEST = b"GET /report HTTP/1.1\r\nHost: agent\r\n\r\n"


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture
def port() -> Iterator[int]:
    limits = ConnectionLimits(header_timeout_s=HEADER_TIMEOUT_S, keepalive_s=KEEPALIVE_S)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        http=guarded_protocol(limits),
        timeout_keep_alive=int(KEEPALIVE_S) + 1,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    sock.close()


def ask(conn: socket.socket) -> bytes:
    conn.sendall(REQUEST)
    answer = b""
    while not answer.endswith(b"{}"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        answer += chunk
    return answer


def is_closed(conn: socket.socket, wait_s: float) -> bool:
    conn.settimeout(wait_s)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_an_idle_connection_outlives_the_header_timeout_until_the_keepalive(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        assert ask(conn).startswith(b"HTTP/1.1 200")
        assert not is_closed(conn, 3 * HEADER_TIMEOUT_S)  # idle past the header timeout: kept
        conn.settimeout(5)
        assert ask(conn).startswith(b"HTTP/1.1 200")  # the next pull on the same connection
        started = time.monotonic()
        assert is_closed(conn, KEEPALIVE_S + 2)
        assert KEEPALIVE_S - 0.3 < time.monotonic() - started < KEEPALIVE_S + 1.5


def test_a_slow_head_after_an_idle_wait_still_has_only_the_header_timeout(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        assert ask(conn).startswith(b"HTTP/1.1 200")
        time.sleep(HEADER_TIMEOUT_S)  # idle a while, then a head that never ends
        conn.sendall(b"GET /report HTTP/1.1\r\nHost: agent\r\n")
        started = time.monotonic()
        assert is_closed(conn, KEEPALIVE_S)
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 0.5
