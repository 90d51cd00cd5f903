"""The API's limits over a real socket: uvicorn as served by ``python -m api``, no shortcut.

Bounds stated here: a refused 200 MB chunked upload (three at once) grows the API process's peak
RSS (VmHWM) by less than ``RSS_BOUND_MIB``; an 8 MB header is refused the same way; a
connection that drips its request head is closed within the header timeout (2 s here) plus 3 s.
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.integration.api_fixtures import ApiServer, make_tokens, start_api
from tests.support.processes import REPO
from tests.support.servers import Servers

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)

RSS_BOUND_MIB = 40
UPLOAD_BYTES = 200 * 1024 * 1024
CHUNK = b"x" * (64 * 1024)
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 4.0


@pytest.fixture(scope="module")
def edge(servers: Servers, logs: Path) -> Iterator[ApiServer]:
    """An API process of its own, so that its peak memory is this module's alone."""
    server = start_api(
        servers,
        logs,
        make_tokens(),
        name="api-edge",
        AUTORECOVERY_API_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        AUTORECOVERY_API_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
    )
    yield server
    server.stop()
    assert "Traceback" not in server.proc.log(), server.proc.log()[-6000:]


def peak_rss_mib(server: ApiServer) -> float:
    """The API process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{server.proc.popen.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _address(server: ApiServer) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


def _status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            break
        data += part
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def chunked_upload(
    server: ApiServer, path: str, token: str | None, total: int = UPLOAD_BYTES
) -> tuple[int, int]:
    """Stream ``total`` bytes chunked to ``path`` until the API answers; return (status, bytes sent)."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n{auth}"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    sent = 0
    with socket.create_connection(_address(server), timeout=30) as sock:
        sock.sendall(head.encode())
        frame = f"{len(CHUNK):x}\r\n".encode() + CHUNK + b"\r\n"
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                return _status_of(sock), sent  # answered before the body was all sent
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(CHUNK)
        try:
            return _status_of(sock), sent
        except ConnectionResetError:
            return 0, sent


def _in_parallel(*calls: Any) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_chunked_uploads_are_refused_before_they_fill_memory(edge: ApiServer) -> None:
    before = peak_rss_mib(edge)
    path = "/api/v1/clusters"
    anonymous = _in_parallel(*[lambda: chunked_upload(edge, path, None) for _ in range(3)])
    assert [status for status, _ in anonymous] == [401, 401, 401], anonymous
    # What was sent before the answer showed is what loopback's socket buffers took, not the API.
    assert all(sent < 32 * 1024 * 1024 for _, sent in anonymous), anonymous
    admin = _in_parallel(*[lambda: chunked_upload(edge, path, edge.tokens["alice"]) for _ in range(3)])
    assert [status for status, _ in admin] == [413, 413, 413], admin
    assert all(sent < 32 * 1024 * 1024 for _, sent in admin), admin
    with edge.client() as http:
        assert http.get("/healthz").status_code == 200
    grown = peak_rss_mib(edge) - before
    assert grown < RSS_BOUND_MIB, f"peak RSS grew {grown:.0f} MiB ({anonymous}, {admin})"


def test_a_declared_oversized_body_gets_413_in_the_error_shape(edge: ApiServer) -> None:
    with edge.client("alice") as http:
        answer = http.post("/api/v1/clusters", content=b"x" * (2 * 1024 * 1024))
        assert answer.status_code == 413
        assert (answer.json()["error"], answer.json()["field"]) == ("too_large", "body")
    with edge.client() as http:  # no token: 401 whatever the size
        assert http.post("/api/v1/clusters", content=b"x" * (2 * 1024 * 1024)).status_code == 401


def test_an_8_mb_header_is_refused(edge: ApiServer) -> None:
    before = peak_rss_mib(edge)
    with socket.create_connection(_address(edge), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Big: ")
        status = 0
        for _ in range(8 * 16):  # 8 MiB in 64 KiB pieces, until the API answers
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                break
        try:
            status = _status_of(sock)
        except ConnectionResetError:
            status = -1  # closed without an answer: refused all the same
    assert status in (400, 431, -1), status
    assert peak_rss_mib(edge) - before < RSS_BOUND_MIB


def test_connections_that_drip_their_headers_are_closed(edge: ApiServer) -> None:
    socks = [socket.create_connection(_address(edge), timeout=10) for _ in range(50)]
    started = time.monotonic()
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        closed: set[int] = set()
        while len(closed) < len(socks) and time.monotonic() - started < HEADER_TIMEOUT_S + 8:
            for i, sock in enumerate(socks):
                if i in closed:
                    continue
                try:
                    sock.sendall(b"X-Drip: 1\r\n")  # a byte now and then, never the end of the head
                    if select.select([sock], [], [], 0)[0] and sock.recv(1024) == b"":
                        closed.add(i)
                except OSError:
                    closed.add(i)
            time.sleep(0.5)
        took = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} slow connections still open"
    assert took < HEADER_TIMEOUT_S + 3
    with edge.client() as http:  # a normal request is unaffected
        assert http.head("/healthz").status_code == 200


def test_slow_uploads_with_a_reporter_token_are_closed_after_the_body_timeout(edge: ApiServer) -> None:
    head = (
        "POST /api/v1/hosts/h-0001/report HTTP/1.1\r\nHost: api\r\n"
        f"Authorization: Bearer {edge.tokens['rita']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
    ).encode()
    socks = [socket.create_connection(_address(edge), timeout=10) for _ in range(100)]
    started = time.monotonic()
    closed: set[int] = set()
    try:
        for sock in socks:
            sock.sendall(head + b'{"host_id": ')
        while len(closed) < len(socks) and time.monotonic() - started < BODY_TIMEOUT_S + 10:
            for i, sock in enumerate(socks):
                if i in closed:
                    continue
                try:
                    sock.sendall(b" ")  # a byte now and then, never the whole body
                    if select.select([sock], [], [], 0)[0] and sock.recv(1024) == b"":
                        closed.add(i)
                except OSError:
                    closed.add(i)
            time.sleep(0.5)
        took = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    assert len(closed) == len(socks), f"{len(socks) - len(closed)} slow uploads still open"
    assert BODY_TIMEOUT_S - 1 < took < BODY_TIMEOUT_S + 4, took
    with edge.client() as http:
        assert http.head("/healthz").status_code == 200


def test_readyz_reuses_one_broker_connection(edge: ApiServer, servers: Servers) -> None:
    counter = redis.Redis.from_url(servers.broker_url)
    with edge.client() as http:
        http.get("/readyz")  # the kept connection opens here
        before = int(counter.info("stats")["total_connections_received"])
        answers = [http.get("/readyz") for _ in range(300)]
    after = int(counter.info("stats")["total_connections_received"])
    counter.close()
    assert {a.json()["status"] for a in answers} == {"ready"}
    assert {tuple(a.json()) for a in answers} == {("status",)}, "anonymous callers see only the status"
    # One connection per call would be 300 or more; the margin is other tests sharing Redis.
    assert after - before < 60, after - before


def test_the_access_log_never_records_a_query_string(edge: ApiServer) -> None:
    secret = "query-secret-" + "q" * 20
    with edge.client("vic") as http:
        refused = http.get(f"/api/v1/hosts?token={secret}")
        assert (refused.status_code, refused.json()["field"]) == (400, "token")
        assert http.get(f"/api/v1/hosts?limit=5&after={secret}").status_code == 200
    time.sleep(0.2)  # the access log line is written after the answer
    log = edge.proc.log()
    assert "/api/v1/hosts?[query redacted]" in log
    assert secret not in log


def test_connections_beyond_the_limit_get_503(servers: Servers, logs: Path) -> None:
    server = start_api(servers, logs, make_tokens(), name="api-narrow", AUTORECOVERY_API_MAX_CONNECTIONS="4")
    try:
        idle = [socket.create_connection(_address(server), timeout=10) for _ in range(4)]
        time.sleep(0.2)
        with server.client() as http:
            assert http.get("/healthz").status_code == 503
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        with server.client() as http:
            assert http.get("/healthz").status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("tokens", "words"),
    [
        ("alice:admin:CHANGE_ME_TO_A_LONG_RANDOM_TOKEN", "placeholder"),
        ("alice:admin:aaaaaaaaaaaaaaaa", "repeats itself"),
    ],
)
def test_the_api_refuses_to_start_with_a_weak_token(servers: Servers, tokens: str, words: str) -> None:
    env = servers.env(AUTORECOVERY_API_TOKENS=tokens, AUTORECOVERY_API_PORT="0")
    proc = subprocess.run(
        [sys.executable, "-m", "api"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "AUTORECOVERY_API_TOKENS" in proc.stderr and words in proc.stderr
    assert tokens.split(":", 2)[2] not in proc.stderr + proc.stdout
