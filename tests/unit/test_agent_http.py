"""``HttpAgentClient`` (agent protocol v1) against ``httpx.MockTransport``: no network."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import tenacity.nap

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

Handler = Callable[[httpx.Request], httpx.Response]


class _Stream(httpx.SyncByteStream):
    """A body the client reads as from a socket (a ``content=`` body counts as read already)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self._data


def streamed(handler: Handler) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        resp = handler(request)
        return httpx.Response(resp.status_code, headers=resp.headers, stream=_Stream(resp.content))

    return handle



@pytest.fixture
def naps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record tenacity's backoff sleeps instead of sleeping."""
    slept: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=slept.append))
    return slept


@pytest.fixture
def make_client(naps: list[float]) -> Iterator[Callable[..., HttpAgentClient]]:
    made: list[HttpAgentClient] = []

    def make(handler: Handler, retries: int = 2, concurrency: int = 10) -> HttpAgentClient:
        client = HttpAgentClient(
            report_timeout_s=1.0, init_timeout_s=5.0, concurrency=concurrency, retries=retries
        )
        client._client.close()
        client._client = httpx.Client(transport=httpx.MockTransport(streamed(handler)))
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


def raising(exc_type: type[httpx.TransportError]) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        raise exc_type("simulated", request=request)

    return handle


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


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ConnectError])
def test_a_timeout_or_connection_error_is_an_unreachable_observation(
    make_client: Callable[..., HttpAgentClient], exc_type: type[httpx.TransportError]
) -> None:
    report = make_client(raising(exc_type)).get_report(TARGET, NOW)
    assert report.agent_reachable is False
    said = {
        httpx.ReadTimeout: "no complete answer in time",
        httpx.ConnectTimeout: "cannot connect: connection timed out",
        httpx.ConnectError: "cannot connect: simulated",
    }[exc_type]
    assert report.error == said  # a sentence, not the HTTP library's class name
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
        answer(500, {"error": "x"}),
        answer(200, text="not json"),
        answer(200, {"status": "fine"}),
        answer(200, {"ok": "yes"}),
        answer(200, ["ok"]),
    ],
    ids=["http 500", "not json", "no ok", "ok not a boolean", "not an object"],
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
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(InitOutcomeUnknown, match="no complete answer in time"):
        make_client(handle, retries=3).init(TARGET, 7, "a")
    assert len(calls) == 1 and naps == []


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout])
def test_init_connection_errors_are_retried_then_agent_unavailable(
    make_client: Callable[..., HttpAgentClient], naps: list[float], exc_type: type[httpx.TransportError]
) -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise exc_type("down", request=request)

    with pytest.raises(AgentUnavailable) as info:
        make_client(handle, retries=3).init(TARGET, 7, "a")
    assert len(calls) == 4
    assert len(naps) == 3 and all(0 < s <= 5.0 for s in naps)
    assert "cannot connect: " in str(info.value) and exc_type.__name__ not in str(info.value)
    assert isinstance(info.value.__cause__, exc_type)


def test_init_recovers_when_a_retry_gets_through(
    make_client: Callable[..., HttpAgentClient], naps: list[float]
) -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"ok": True})

    assert make_client(handle, retries=2).init(TARGET, 1, "a") == InitResult(ok=True)
    assert len(calls) == 3


def test_init_with_no_retries_tries_once(make_client: Callable[..., HttpAgentClient]) -> None:
    calls: list[int] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(AgentUnavailable):
        make_client(handle, retries=0).init(TARGET, 1, "a")
    assert len(calls) == 1


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
