"""``HttpAgentClient`` (agent protocol v1) against a local aiohttp server answering as a handler says.

Handlers are written with httpx's request and response types; the agent's name resolves (through
the client's ``dns`` hook) to the local server, so the URLs the client builds are the ones an
agent named ``agent-1`` would see. Failures to connect are the resolver's: the call never
reaches the server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
import pytest
import tenacity.nap
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from autorecovery.adapters.agents import InitResult, Target
from autorecovery.adapters.agents.http import HttpAgentClient
from models.assessment import assess
from models.domain import Cluster, Reason
from models.errors import AgentUnavailable, InitOutcomeUnknown, StaleFence
from models.report import is_bad_report

NOW = datetime(2026, 11, 24, 12, 0, 5, tzinfo=UTC)
TARGET = Target("h-001", "http://agent-1:9000/")
REPORT: dict[str, Any] = {
    "host_id": "h-001",
    "reported_at": "2026-11-24T12:00:00Z",
    "kvm": True,
    "version": "4.5.2",
    "cpu_flags": ["vmx", "sse4_2"],
    "networks": {"mgmt": True, "vmnet": False},
    "storage_domains": {"sd-1": True, "sd-2": False},
    "vms_running": 3,
    "mem_free_mb": 12000,
}
#: The client's timeouts in these tests (a "slow" answer outlasts them); connecting is bounded by
#: the report timeout, below the init timeout as in production.
TIMEOUT_S = 0.5
INIT_TIMEOUT_S = 1.0

Handler = Callable[[httpx.Request], httpx.Response]


class Slow(Exception):
    """Raised by a handler: answer only after the client gave up."""


class NotConnected(Exception):
    """Raised by a connect hook: the name does not resolve (the call never reaches the agent)."""


class ConnectSlow(Exception):
    """Raised by a connect hook: resolving takes longer than the client's connect timeout."""


@dataclass
class Agent:
    """The local server: the handler it runs, and a hook run at each connection attempt."""

    handler: Handler = field(default=lambda request: httpx.Response(500))
    connect: Callable[[], None] = field(default=lambda: None)
    port: int = 0

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        forwarded = httpx.Request(
            request.method,
            f"http://{request.host}{request.path_qs}",
            headers=dict(request.headers),
            content=body,
        )
        try:
            resp = self.handler(forwarded)
        except Slow:
            await asyncio.sleep(INIT_TIMEOUT_S + 0.5)
            return web.Response(status=500)
        raw = resp.content
        headers = {
            k: v for k, v in resp.headers.items() if k.lower() not in ("content-length", "transfer-encoding")
        }
        return web.Response(status=resp.status_code, body=raw, headers=headers)


class LocalDns(AbstractResolver):
    """Every name is the local server; the agent's connect hook may fail or stall first."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            self.agent.connect()
        except NotConnected as exc:
            raise OSError(f"simulated: {exc}") from None
        except ConnectSlow:
            await asyncio.sleep(TIMEOUT_S + 0.5)
        return [
            {
                "hostname": host,
                "host": "127.0.0.1",
                "port": self.agent.port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        return None


@pytest.fixture
def agent() -> Iterator[Agent]:
    """Run the local server on its own loop thread."""
    served = Agent()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", served.dispatch)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        served.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    yield served
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record tenacity's backoff sleeps instead of sleeping."""
    slept: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=slept.append))
    return slept


@pytest.fixture
def make_client(agent: Agent, naps: list[float]) -> Iterator[Callable[..., HttpAgentClient]]:
    made: list[HttpAgentClient] = []

    def make(
        handler: Handler, retries: int = 2, concurrency: int = 10, connect: Callable[[], None] = lambda: None
    ) -> HttpAgentClient:
        agent.handler, agent.connect = handler, connect
        client = HttpAgentClient(
            report_timeout_s=TIMEOUT_S,
            init_timeout_s=INIT_TIMEOUT_S,
            concurrency=concurrency,
            retries=retries,
            dns_ttl_s=0,  # every attempt connects anew through the hook
            dns=LocalDns(agent),
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def answer(status: int = 200, body: Any = None, text: str | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body)

    return handle


def slow(request: httpx.Request) -> httpx.Response:
    raise Slow


def not_connected() -> None:
    raise NotConnected("down")


def connect_slow() -> None:
    raise ConnectSlow


# --- get_report ---------------------------------------------------------------------------------


def test_good_report(make_client: Callable[..., HttpAgentClient]) -> None:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=REPORT)

    report = make_client(handle).get_report(TARGET, NOW)
    assert [(r.method, str(r.url)) for r in seen] == [("GET", "http://agent-1:9000/report")]
    assert report.agent_reachable is True
    assert report.host_id == "h-001"
    assert report.reported_at == datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
    assert report.storage_domains == {"sd-1": True, "sd-2": False}
    assert report.source == "pull"
    assert report.error is None


@pytest.mark.parametrize("status", [500, 404, 503, 204])
def test_an_error_status_is_an_unreachable_observation(
    make_client: Callable[..., HttpAgentClient], status: int
) -> None:
    report = make_client(answer(status, {"error": "x"})).get_report(TARGET, NOW)
    assert report.agent_reachable is False
    assert report.reported_at == NOW
    assert report.error == f"agent answered HTTP {status}"
    assert not is_bad_report(report)
    assert assess(report, Cluster("c"), NOW, 30).problems[0].reason is Reason.AGENT_UNREACHABLE


@pytest.mark.parametrize(
    ("handler", "connect", "error"),
    [
        (slow, lambda: None, f"no complete answer within {TIMEOUT_S:g}s"),
        (answer(200, REPORT), connect_slow, "no complete answer"),  # a pull's connect and total are one
        (answer(200, REPORT), not_connected, "cannot connect to agent-1:9000: simulated: down"),
    ],
    ids=["read timeout", "connect timeout", "connect error"],
)
def test_a_timeout_or_connection_error_is_an_unreachable_observation(
    make_client: Callable[..., HttpAgentClient], handler: Handler, connect: Callable[[], None], error: str
) -> None:
    report = make_client(handler, connect=connect).get_report(TARGET, NOW)
    assert report.agent_reachable is False
    assert (report.error or "").startswith(error), report.error  # a sentence, not a class name
    assert report.reported_at == NOW


def test_a_body_that_is_not_json_is_a_bad_report(
    make_client: Callable[..., HttpAgentClient],
) -> None:
    report = make_client(answer(200, text="<html>")).get_report(TARGET, NOW)
    assert is_bad_report(report)
    assert (report.error or "").startswith("bad report: body: cannot be decoded as UTF-8 JSON")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({k: v for k, v in REPORT.items() if k != "kvm"}, "kvm"),
        ({**REPORT, "vms_running": True}, "vms_running"),
        ({**REPORT, "host_id": "h-999"}, "host_id"),
        ({**REPORT, "reported_at": "2026-11-24T12:00:00"}, "reported_at"),
        ([REPORT], "report"),
    ],
)
def test_a_bad_report_is_an_observation_naming_the_field(
    make_client: Callable[..., HttpAgentClient], body: Any, field: str
) -> None:
    report = make_client(answer(200, body)).get_report(TARGET, NOW)
    assert report.agent_reachable is False
    assert is_bad_report(report)
    assert report.error is not None and report.error.startswith(f"bad report: {field}: ")
    a = assess(report, Cluster("c"), NOW, 30)
    assert [p.reason for p in a.problems] == [Reason.BAD_REPORT]
    assert field in a.problems[0].detail


@pytest.mark.parametrize(
    "changes",
    [{"mem_free_mb": 2**31}, {"networks": {"mg\x00mt": True}}],
    ids=["count above integer", "nul in a network name"],
)
def test_a_report_the_store_cannot_hold_is_a_bad_report(
    make_client: Callable[..., HttpAgentClient], changes: dict[str, Any]
) -> None:
    report = make_client(answer(200, {**REPORT, **changes})).get_report(TARGET, NOW)
    assert is_bad_report(report)


def test_a_bad_report_observation_is_storable(make_client: Callable[..., HttpAgentClient]) -> None:
    report = make_client(answer(200, {**REPORT, "networks": {"a\x00": 1}})).get_report(TARGET, NOW)
    assert is_bad_report(report)
    assert "\x00" not in (report.error or "")


# --- init ---------------------------------------------------------------------------------------


def test_init_ok_sends_the_fence(make_client: Callable[..., HttpAgentClient]) -> None:
    seen: list[tuple[str, str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), json.loads(request.content)))
        return httpx.Response(200, json={"ok": True})

    assert make_client(handle).init(TARGET, 42, "act-1") == InitResult(ok=True)
    assert seen == [("POST", "http://agent-1:9000/init", {"fence": 42, "activation_id": "act-1"})]


def test_init_failed_carries_the_agents_reason(make_client: Callable[..., HttpAgentClient]) -> None:
    body = {"ok": False, "reason": "storage_domain_unreachable", "detail": "sd-1 timed out"}
    result = make_client(answer(200, body)).init(TARGET, 1, "a")
    assert result == InitResult(ok=False, reason="storage_domain_unreachable", detail="sd-1 timed out")


def test_init_failed_without_a_reason_is_general(make_client: Callable[..., HttpAgentClient]) -> None:
    assert make_client(answer(200, {"ok": False})).init(TARGET, 1, "a") == InitResult(
        ok=False, reason="general", detail=None
    )


def test_init_409_is_a_stale_fence_and_is_not_retried(make_client: Callable[..., HttpAgentClient]) -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(409, json={"error": "stale_fence", "highest": 43})

    with pytest.raises(StaleFence, match="42"):
        make_client(handle).init(TARGET, 42, "a")
    assert len(calls) == 1


@pytest.mark.parametrize(
    "handler",
    [
        answer(404, {"error": "x"}),  # a server error is an unknown outcome (test above)
        answer(200, text="not json"),
        answer(200, {"status": "fine"}),
        answer(200, {"ok": "yes"}),
        answer(200, ["ok"]),
    ],
    ids=["http 404", "not json", "no ok", "ok not a boolean", "not an object"],
)
def test_init_with_a_broken_answer_is_agent_unavailable(
    make_client: Callable[..., HttpAgentClient], handler: Handler
) -> None:
    with pytest.raises(AgentUnavailable, match="agent-1:9000/init"):
        make_client(handler).init(TARGET, 1, "a")


def test_an_init_that_may_have_reached_the_agent_is_not_sent_again(
    make_client: Callable[..., HttpAgentClient], naps: list[float]
) -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise Slow

    with pytest.raises(InitOutcomeUnknown, match="no complete answer"):
        make_client(handle, retries=3).init(TARGET, 7, "a")
    assert len(calls) == 1 and naps == []


@pytest.mark.parametrize(
    ("hook", "cause"),
    [(not_connected, aiohttp.ClientConnectorError), (connect_slow, aiohttp.ConnectionTimeoutError)],
    ids=["connect error", "connect timeout"],
)
def test_init_connection_errors_are_retried_then_agent_unavailable(
    make_client: Callable[..., HttpAgentClient],
    naps: list[float],
    hook: Callable[[], None],
    cause: type[Exception],
) -> None:
    attempts: list[int] = []
    calls: list[int] = []

    def connect() -> None:
        attempts.append(1)
        hook()

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(200, json={"ok": True})

    with pytest.raises(AgentUnavailable) as info:
        make_client(handle, retries=3, connect=connect).init(TARGET, 7, "a")
    assert len(attempts) == 4 and calls == []
    assert len(naps) == 3 and all(0 < s <= 5.0 for s in naps)
    assert cause.__name__ not in str(info.value)
    assert isinstance(info.value.__cause__, cause)


def test_init_recovers_when_a_retry_gets_through(
    make_client: Callable[..., HttpAgentClient], naps: list[float]
) -> None:
    attempts: list[int] = []

    def connect() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise NotConnected("refused")

    assert make_client(answer(200, {"ok": True}), retries=2, connect=connect).init(
        TARGET, 1, "a"
    ) == InitResult(ok=True)
    assert len(attempts) == 3


def test_init_with_no_retries_tries_once(make_client: Callable[..., HttpAgentClient]) -> None:
    attempts: list[int] = []

    def connect() -> None:
        attempts.append(1)
        raise NotConnected("refused")

    with pytest.raises(AgentUnavailable):
        make_client(answer(200, {"ok": True}), retries=0, connect=connect).init(TARGET, 1, "a")
    assert len(attempts) == 1


def test_connect_storage_domain_posts_the_fence(make_client: Callable[..., HttpAgentClient]) -> None:
    seen: list[tuple[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), json.loads(request.content)))
        return httpx.Response(200, json={"ok": True})

    assert make_client(handle).connect_storage_domain(TARGET, "sd-1", 5, "act-1") == InitResult(ok=True)
    url = "http://agent-1:9000/storage-domains/sd-1/connect"
    assert seen == [(url, {"fence": 5, "activation_id": "act-1"})]


def test_init_builds_no_deprecated_backoff(make_client: Callable[..., HttpAgentClient]) -> None:
    client = make_client(answer(200, {"ok": True}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert client.init(TARGET, 1, "a") == InitResult(ok=True)


@pytest.mark.parametrize("status", [500, 502, 504])
def test_a_server_error_to_an_init_is_an_unknown_outcome_not_a_failure(
    make_client: Callable[..., HttpAgentClient], status: int
) -> None:
    # A proxy timing out mid-init, or a handler that crashed while the init ran: it may run.
    client = make_client(answer(status, text="<html>Gateway Timeout</html>"))
    with pytest.raises(InitOutcomeUnknown, match=f"HTTP {status}"):
        client.init(TARGET, 7, "a")
    with pytest.raises(InitOutcomeUnknown, match=f"HTTP {status}"):
        client.start_init(TARGET, 7, "a")


def test_an_agent_url_with_credentials_is_never_called_nor_shown(
    make_client: Callable[..., HttpAgentClient],
) -> None:
    # Registered before registration refused it: refused at the call, and no message shows it.
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"ok": True})

    client = make_client(handle)
    target = Target("h-001", "http://admin:s3cret@agent-1:9000/")
    with pytest.raises(AgentUnavailable) as info:
        client.init(target, 1, "a")
    assert "s3cret" not in str(info.value) and "admin" not in str(info.value)
    assert "agent-1:9000/init" in str(info.value) and "must not carry credentials" in str(info.value)
    report = client.get_report(target, NOW)
    assert report.agent_reachable is False and "s3cret" not in (report.error or "")
    assert calls == []


def test_a_503_outcome_unknown_is_an_unknown_outcome_and_other_503s_ran_nothing(
    make_client: Callable[..., HttpAgentClient],
) -> None:
    stopping = {"error": "outcome_unknown", "activation_id": "a", "fence": 7, "started_at": None}
    with pytest.raises(InitOutcomeUnknown, match="stopped while the init ran"):
        make_client(answer(503, stopping)).init(TARGET, 7, "a")
    with pytest.raises(AgentUnavailable, match="HTTP 503 state_unwritable"):
        make_client(answer(503, {"error": "state_unwritable", "detail": "x"})).init(TARGET, 7, "a")
    with pytest.raises(AgentUnavailable, match="HTTP 503$"):
        make_client(answer(503, text="<html>down</html>")).init(TARGET, 7, "a")


def test_a_hosts_report_call_is_worked_out_once_and_again_when_its_url_changes(
    make_client: Callable[..., HttpAgentClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    import autorecovery.adapters.agents.http as http

    checked: list[str] = []
    real_check = http.check_target
    monkeypatch.setattr(
        http, "check_target", lambda policy, url: (checked.append(url), real_check(policy, url))
    )
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=REPORT)

    client = make_client(handle)
    for _ in range(3):  # three ticks
        assert client.pull_reports([TARGET], NOW)[0].agent_reachable
    moved = Target("h-001", "http://agent-2:9000")
    assert client.pull_reports([moved], NOW)[0].agent_reachable
    assert checked == ["http://agent-1:9000/", "http://agent-2:9000"]
    assert seen == ["http://agent-1:9000/report"] * 3 + ["http://agent-2:9000/report"]
