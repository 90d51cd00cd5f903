"""Operator commands against an ``httpx.MockTransport``: parsing, exit codes, JSON, the token."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from autorecovery.settings import ENV_PREFIX
from cli import ops
from cli.main import build_parser
from cli.ops import Exit, since_value

TOKEN = "s3cret-token-value-0123456789"  # noqa: S105 - a test token, checked never to be printed
URL = "https://api.test:8800"  # plain http beyond loopback would need --insecure

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No AUTORECOVERY_* variable or local admin-token file from the caller leaks in."""
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AUTORECOVERY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(ops.wait, "POLL_S", 0.01)
    yield


class Api:
    """Records the requests the CLI sends and answers them with ``routes``."""

    def __init__(self, routes: dict[tuple[str, str], Any]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes[(request.method, request.url.raw_path.decode().split("?")[0])]
        if callable(answer):
            answer = answer(request)
        if isinstance(answer, httpx.Response):
            return answer
        status, body = answer
        return httpx.Response(status, json=body)


def run(argv: list[str], api: Handler, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Parse ``argv`` like ``autorecovery`` does and run it against ``api``."""
    args = build_parser().parse_args(argv)
    args.transport = httpx.MockTransport(api)
    code = args.handler(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def host(host_id: str = "h-0001", status: str = "non_operational", **extra: Any) -> dict[str, Any]:
    base = {"id": host_id, "cluster": "c-1", "agent_url": "http://sim/h", "status": status,
            "reason": None if status == "up" else "storage_domain_unreachable",
            "detail": None if status == "up" else "sd-1 unreachable", "autorecovery": True,
            "status_changed_at": "2026-11-24T12:00:00+00:00", "report_age_s": 1.5,
            "in_flight": False, "last_decision": "has_problems"}
    base.update(extra)
    return base


def detail(status: str = "non_operational", activation: dict[str, Any] | None = None,
           recent: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {**host(status=status), "report": None,
            "problems": [] if status == "up" else [{"reason": "storage_domain_unreachable",
                                                    "detail": "sd-1 unreachable"}],
            "last_decision": {"code": "has_problems", "detail": "sd-1", "at": None},
            "why_not_recovered": None if status == "up" else {"code": "has_problems",
                                                             "detail": "sd-1 unreachable"},
            "activation": activation, "recent_activations": recent or []}


def activation(state: str, outcome: str | None = None, detail_text: str | None = None) -> dict[str, Any]:
    return {"id": "act-1", "host_id": "h-0001", "trigger": "manual", "actor": "alice",
            "state": state, "fence": 7, "outcome": outcome, "reason": None, "detail": detail_text,
            "queued_at": "2026-11-24T12:00:00+00:00", "started_at": None, "ended_at": None}


QUEUED = (202, {"task_id": "act-1", "activation_id": "act-1", "host_id": "h-0001",
                "state": "queued", "outcome": None, "reason": None, "detail": None})


# -- Parsing ---------------------------------------------------------------------------------


def test_list_sends_the_filters_as_query_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/hosts"): (200, {"hosts": [host()], "next_after": None})})
    code, out, _ = run(["hosts", "list", "--status", "non_operational", "--cluster", "c-1",
                        "--autorecovery", "off", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    params = dict(api.requests[0].url.params)
    assert params == {"status": "non_operational", "cluster": "c-1", "autorecovery": "false",
                      "limit": "1000"}
    assert "h-0001" in out and "storage_domain_unreachable" in out and "1 host(s)" in out


def test_list_follows_pages_up_to_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    pages = {None: ["h-1", "h-2"], "h-2": ["h-3", "h-4"], "h-4": ["h-5"]}

    def page(request: httpx.Request) -> tuple[int, dict[str, Any]]:
        after = request.url.params.get("after")
        limit = int(request.url.params["limit"])
        ids = pages[after][:limit]
        more = ids[-1] != "h-5"
        return 200, {"hosts": [host(i) for i in ids], "next_after": ids[-1] if more else None}

    api = Api({("GET", "/api/v1/hosts"): page})
    code, out, _ = run(["hosts", "list", "--json", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    body = json.loads(out)
    assert [h["id"] for h in body["hosts"]] == ["h-1", "h-2", "h-3", "h-4", "h-5"]
    assert body["next_after"] is None

    api = Api({("GET", "/api/v1/hosts"): page})
    code, out, _ = run(["hosts", "list", "--json", "--limit", "3", "--api-url", URL], api, capsys)
    body = json.loads(out)
    assert [h["id"] for h in body["hosts"]] == ["h-1", "h-2", "h-3"]
    assert [r.url.params["limit"] for r in api.requests] == ["3", "1"]


@pytest.mark.parametrize("argv", [
    ["hosts"],
    ["hosts", "list", "--status", "broken"],
    ["hosts", "list", "--autorecovery", "maybe"],
    ["hosts", "list", "--limit", "0"],
    ["hosts", "show"],
    ["hosts", "activate", "h-1", "--wait", "--timeout", "-1"],
    ["hosts", "activate", "h-1", "--wait", "--timeout", "nan"],
    ["hosts", "autorecovery", "h-1", "yes"],
    ["audit", "--limit", "many"],
])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == Exit.USAGE


def test_timeout_without_wait_is_refused_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({})
    code, _, err = run(["hosts", "activate", "h-0001", "--timeout", "5", "--api-url", URL], api, capsys)
    assert code == Exit.USAGE
    assert api.requests == [] and "--wait" in err


def test_a_non_http_api_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["hosts", "list", "--api-url", "ftp://api"], Api({}), capsys)
    assert code == Exit.USAGE and "AUTORECOVERY_API_URL" in err


def test_an_invalid_setting_exits_2_naming_the_variable(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTORECOVERY_BATCH_SIZE", "lots")
    code, _, err = run(["plan"], Api({}), capsys)
    assert code == Exit.USAGE and "AUTORECOVERY_BATCH_SIZE" in err


def test_host_ids_are_escaped_in_the_path(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/hosts/a%2F..%2Fb"): (404, {"error": "not_found",
                                                          "message": "no", "field": "host_id"})})
    code, _, _ = run(["hosts", "show", "a/../b", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND
    assert api.requests[0].url.raw_path == b"/api/v1/hosts/a%2F..%2Fb"


# -- Exit codes and messages -----------------------------------------------------------------


@pytest.mark.parametrize(("status", "error", "expected"), [
    (400, "bad_request", Exit.USAGE),
    (422, "invalid_input", Exit.USAGE),
    (413, "too_large", Exit.USAGE),
    (401, "unauthorized", Exit.AUTH),
    (403, "forbidden", Exit.AUTH),
    (404, "not_found", Exit.NOT_FOUND),
    (409, "already_up", Exit.CONFLICT),
    (409, "activation_in_flight", Exit.CONFLICT),
    (500, "internal_error", Exit.FAILED),
    (502, "bad_gateway", Exit.UNREACHABLE),
    (503, "broker_unavailable", Exit.UNREACHABLE),
    (504, "gateway_timeout", Exit.TIMEOUT),
])
def test_api_errors_map_to_exit_codes_and_print_the_message(
    status: int, error: str, expected: Exit, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"error": error, "message": f"the API says {error}", "field": "enabled",
            "holder": {"host_id": "h-0001", "actor": "bob"}}
    api = Api({("PUT", "/api/v1/hosts/h-0001/autorecovery"): (status, body)})
    code, out, err = run(["hosts", "autorecovery", "h-0001", "off", "--api-url", URL], api, capsys)
    assert code == expected
    assert out == ""
    assert f"the API says {error}" in err
    assert "what to do:" in err


def test_hints_say_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (401, {"error": "unauthorized", "message": "a bearer token is required"}, "AUTORECOVERY_TOKEN"),
        (403, {"error": "forbidden", "message": "viewer"}, "admin token"),
        (409, {"error": "activation_in_flight", "message": "held",
               "holder": {"host_id": "h-0001"}}, "autorecovery hosts show h-0001"),
        (422, {"error": "invalid_input", "message": "enabled: bad", "field": "enabled"}, "fix enabled"),
        (503, {"error": "unavailable", "message": "down"}, "/readyz"),
    ]
    for status, body, hint in cases:
        api = Api({("POST", "/api/v1/hosts/h-0001/activate"): (status, body)})
        _, _, err = run(["hosts", "activate", "h-0001", "--api-url", URL], api, capsys)
        assert hint in err, (status, err)


def test_a_non_json_error_still_gives_its_status(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/plan"): httpx.Response(502, text="<html>bad gateway</html>")})
    code, _, err = run(["plan", "--api-url", URL], api, capsys)
    assert code == Exit.UNREACHABLE and "HTTP 502" in err


@pytest.mark.parametrize(("exc", "expected"), [
    (httpx.ConnectError("refused"), Exit.UNREACHABLE),
    (httpx.ConnectTimeout("slow connect"), Exit.UNREACHABLE),
    (httpx.ReadTimeout("slow answer"), Exit.TIMEOUT),
    (httpx.RemoteProtocolError("garbage"), Exit.UNREACHABLE),
])
def test_transport_failures(exc: Exception, expected: Exit, capsys: pytest.CaptureFixture[str]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    code, _, err = run(["hosts", "list", "--api-url", URL], fail, capsys)
    assert code == expected
    assert "what to do:" in err


def test_a_success_that_is_not_json_fails(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/plan"): httpx.Response(200, text="hello")})
    code, _, err = run(["plan", "--api-url", URL], api, capsys)
    assert code == Exit.USAGE and "not the autorecovery API's JSON" in err and "hello" not in err


# -- --json ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "route", "body"), [
    (["hosts", "show", "h-0001"], ("GET", "/api/v1/hosts/h-0001"), detail()),
    (["plan", "--cluster", "c-1"], ("GET", "/api/v1/plan"),
     {"hosts": [{"host_id": "h-0001", "cluster": "c-1", "status": "non_operational",
                 "next_status": "non_operational", "action": "activate", "code": "recoverable",
                 "detail": "no problem", "problems": []}], "activate": 1, "skip": 0}),
    (["audit", "--host", "h-0001"], ("GET", "/api/v1/audit"),
     {"entries": [{"id": 3, "at": "2026-11-24T12:00:00+00:00", "object_type": "host",
                   "object_id": "h-0001", "event": "autorecovery_disabled", "actor": "alice",
                   "reason": None, "details": {"enabled": False}}], "next_before": None}),
    (["hosts", "autorecovery", "h-0001", "on"], ("PUT", "/api/v1/hosts/h-0001/autorecovery"),
     {"host_id": "h-0001", "autorecovery": True}),
    (["hosts", "maintenance", "h-0001"], ("POST", "/api/v1/hosts/h-0001/maintenance"),
     {"host_id": "h-0001", "status": "maintenance", "detail": "set by an admin"}),
    (["hosts", "activate", "h-0001"], ("POST", "/api/v1/hosts/h-0001/activate"), QUEUED[1]),
])
def test_json_prints_the_api_answer_and_nothing_else(
    argv: list[str], route: tuple[str, str], body: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    status = 202 if route[1].endswith("/activate") else 200
    code, out, err = run([*argv, "--json", "--api-url", URL], Api({route: (status, body)}), capsys)
    assert code == Exit.OK
    assert json.loads(out) == body
    assert out.count("\n") == 1
    assert err == ""


@pytest.mark.parametrize(("argv", "route", "body", "shown"), [
    (["hosts", "show", "h-0001"], ("GET", "/api/v1/hosts/h-0001"),
     detail(recent=[activation("failed", "failed", "init refused")]), "init refused"),
    (["plan"], ("GET", "/api/v1/plan"),
     {"hosts": [{"host_id": "h-0009", "cluster": "c-1", "status": "non_operational",
                 "next_status": "up", "action": "activate", "code": "recoverable",
                 "detail": "[bold]no[/bold] problem", "problems": []}], "activate": 1, "skip": 0},
     "[bold]no[/bold] problem"),
    (["audit"], ("GET", "/api/v1/audit"),
     {"entries": [{"id": 3, "at": "2026-11-24T12:00:00+00:00", "object_type": "host",
                   "object_id": "h-0001", "event": "autorecovery_disabled", "actor": "alice",
                   "reason": None, "details": {"enabled": False}}], "next_before": 3},
     "--before 3"),
])
def test_tables_show_the_data_verbatim(
    argv: list[str], route: tuple[str, str], body: dict[str, Any], shown: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run([*argv, "--api-url", URL], Api({route: (200, body)}), capsys)
    assert code == Exit.OK
    assert shown in out  # data is never read as rich markup


def test_write_bodies(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("PUT", "/api/v1/hosts/h-0001/autorecovery"): (200, {}),
               ("POST", "/api/v1/hosts/h-0001/maintenance"): (200, {"detail": "disk swap"})})
    run(["hosts", "autorecovery", "h-0001", "off", "--api-url", URL], api, capsys)
    run(["hosts", "maintenance", "h-0001", "--reason", "disk swap", "--api-url", URL], api, capsys)
    run(["hosts", "maintenance", "h-0001", "--api-url", URL], api, capsys)
    assert [json.loads(r.content) for r in api.requests] == [
        {"enabled": False}, {"reason": "disk swap"}, {}]


def test_audit_filters(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/audit"): (200, {"entries": [], "next_before": None})})
    run(["audit", "--host", "h-0001", "--actor", "alice", "--event", "activation_succeeded",
         "--since", "2026-01-01T00:00:00Z", "--limit", "5", "--api-url", URL], api, capsys)
    assert dict(api.requests[0].url.params) == {
        "object_type": "host", "object_id": "h-0001", "actor": "alice",
        "event": "activation_succeeded", "since": "2026-01-01T00:00:00Z", "limit": "5"}


def test_since_accepts_relative_times() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    assert since_value("30m", now) == "2026-11-24T11:30:00Z"
    assert since_value("2h", now) == "2026-11-24T10:00:00Z"
    assert since_value("1d", now) == "2026-11-23T12:00:00Z"
    assert since_value("2026-01-01T00:00:00Z", now) == "2026-01-01T00:00:00Z"


def test_activate_force_asks_the_api_to_init_a_host_with_problems(capsys: pytest.CaptureFixture[str]) -> None:
    refusal = {"error": "host_has_problems", "field": "force",
               "message": "host h-0001's fresh report shows kvm_not_running (kvm is not running)",
               "problems": [{"reason": "kvm_not_running", "detail": "kvm is not running"}]}

    def answer(request: httpx.Request) -> tuple[int, dict[str, Any]]:
        return (202, QUEUED[1]) if request.url.params.get("force") == "true" else (409, refusal)

    api = Api({("POST", "/api/v1/hosts/h-0001/activate"): answer})
    code, _, err = run(["hosts", "activate", "h-0001", "--api-url", URL], api, capsys)
    assert code == Exit.CONFLICT
    assert "kvm_not_running" in err and "--force" in err
    code, out, _ = run(["hosts", "activate", "h-0001", "--force", "--api-url", URL], api, capsys)
    assert code == Exit.OK and "queued" in out
    assert [r.url.params.get("force") for r in api.requests] == [None, "true"]


# -- activate --wait -------------------------------------------------------------------------


def waiting_api(*answers: dict[str, Any]) -> Api:
    """POST answers 202; each GET of the host returns the next of ``answers`` (the last repeats)."""
    queue = list(answers)

    def next_answer(_: httpx.Request) -> tuple[int, dict[str, Any]]:
        return 200, queue.pop(0) if len(queue) > 1 else queue[0]

    return Api({("POST", "/api/v1/hosts/h-0001/activate"): QUEUED,
                ("GET", "/api/v1/hosts/h-0001"): next_answer})


def test_wait_exits_0_when_the_host_comes_up(capsys: pytest.CaptureFixture[str]) -> None:
    api = waiting_api(detail("initializing", activation("sent")),
                      detail("up", None, [activation("done", "up")]))
    code, out, err = run(["hosts", "activate", "h-0001", "--wait", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    assert "h-0001 is up" in out
    assert "sent" in err and "done" in err  # state changes, one line each


def test_wait_exits_1_when_the_activation_fails(capsys: pytest.CaptureFixture[str]) -> None:
    api = waiting_api(detail("initializing", activation("sent")),
                      detail("non_operational", None,
                             [activation("failed", "failed", "init refused by agent")]))
    code, _, err = run(["hosts", "activate", "h-0001", "--wait", "--api-url", URL], api, capsys)
    assert code == Exit.FAILED
    assert "init refused by agent" in err and "hosts show h-0001" in err


def test_wait_exits_1_when_skipped_and_the_host_is_not_up(capsys: pytest.CaptureFixture[str]) -> None:
    api = waiting_api(detail("non_operational", None, [activation("skipped", "has_problems")]))
    code, _, err = run(["hosts", "activate", "h-0001", "--wait", "--api-url", URL], api, capsys)
    assert code == Exit.FAILED and "has_problems" in err


def test_wait_exits_3_on_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    api = waiting_api(detail("initializing", activation("sent")))
    code, _, err = run(["hosts", "activate", "h-0001", "--wait", "--timeout", "0.1", "--api-url", URL],
                       api, capsys)
    assert code == Exit.TIMEOUT
    assert "still sent" in err and "--timeout" in err


def test_wait_json_prints_the_activation_and_the_host(capsys: pytest.CaptureFixture[str]) -> None:
    api = waiting_api(detail("up", None, [activation("done", "up")]))
    code, out, err = run(["hosts", "activate", "h-0001", "--wait", "--json", "--api-url", URL],
                         api, capsys)
    assert code == Exit.OK and err == ""
    body = json.loads(out)
    assert body["activation"]["state"] == "done" and body["host"]["status"] == "up"


def test_wait_on_a_conflict_exits_5_without_waiting(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("POST", "/api/v1/hosts/h-0001/activate"): (409, {
        "error": "already_up", "message": "host h-0001 is already up", "field": None})})
    code, _, err = run(["hosts", "activate", "h-0001", "--wait", "--api-url", URL], api, capsys)
    assert code == Exit.CONFLICT and "already up" in err
    assert len(api.requests) == 1


# -- The token -------------------------------------------------------------------------------


def test_the_token_is_sent_from_the_option_or_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = Api({("GET", "/api/v1/plan"): (200, {"hosts": [], "activate": 0, "skip": 0})})
    run(["plan", "--api-url", URL, "--token", TOKEN], api, capsys)
    monkeypatch.setenv("AUTORECOVERY_TOKEN", TOKEN + "-env")
    monkeypatch.setenv("AUTORECOVERY_API_URL", "https://from-env:9000")
    run(["plan"], api, capsys)
    run(["plan", "--token", "option-wins-0123456789"], api, capsys)
    assert [r.headers["authorization"] for r in api.requests] == [
        f"Bearer {TOKEN}", f"Bearer {TOKEN}-env", "Bearer option-wins-0123456789"]
    assert str(api.requests[1].url).startswith("https://from-env:9000/api/v1/plan")


def test_without_a_token_no_header_is_sent(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/plan"): (401, {"error": "unauthorized",
                                               "message": "a bearer token is required"})})
    code, _, _ = run(["plan", "--api-url", URL], api, capsys)
    assert code == Exit.AUTH
    assert "authorization" not in api.requests[0].headers


def test_the_local_admin_token_file_is_used_only_for_a_loopback_api(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin-token").write_text(TOKEN + "\n")
    api = Api({("GET", "/api/v1/plan"): (200, {"hosts": [], "activate": 0, "skip": 0})})
    run(["plan", "--api-url", "http://127.0.0.1:8800"], api, capsys)
    run(["plan", "--api-url", URL], api, capsys)
    assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in api.requests[1].headers


@pytest.mark.parametrize("answer", [
    (200, detail()),
    (401, {"error": "unauthorized", "message": "the bearer token is not valid"}),
    (403, {"error": "forbidden", "message": "token 'vic' is a viewer; this needs admin"}),
    (500, {"error": "internal_error", "message": "internal error"}),
])
@pytest.mark.parametrize("json_mode", [False, True])
def test_the_token_is_never_printed(
    answer: tuple[int, dict[str, Any]], json_mode: bool, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTORECOVERY_TOKEN", TOKEN)
    api = Api({("GET", "/api/v1/hosts/h-0001"): answer})
    argv = ["hosts", "show", "h-0001", "--api-url", URL] + (["--json"] if json_mode else [])
    _, out, err = run(argv, api, capsys)
    assert api.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in out + err


def test_a_token_that_cannot_go_in_a_header_is_refused_without_echoing_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTORECOVERY_TOKEN", "two words-0123456789")
    api = Api({})
    code, out, err = run(["plan", "--api-url", URL], api, capsys)
    assert code == Exit.USAGE and api.requests == []
    assert "AUTORECOVERY_TOKEN" in err
    assert "two words" not in out + err


def test_the_token_is_not_in_the_unreachable_message(capsys: pytest.CaptureFixture[str]) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    code, out, err = run(["plan", "--api-url", URL, "--token", TOKEN], refuse, capsys)
    assert code == Exit.UNREACHABLE
    assert URL in err and TOKEN not in out + err


# -- Safety: pause, resume, holds, state -----------------------------------------------------

PAUSE = {"scope": "fleet", "reason": "storage work", "owner": "alice",
         "created_at": "2026-11-24T12:00:00+00:00", "expires_at": "2026-11-24T12:30:00+00:00"}
SAFETY = {"gate": "monitoring_stale: 150 of 200 hosts have no fresh data", "silent_hosts": 150,
          "observed_hosts": 200, "last_full_tick_at": "2026-11-24T12:00:00+00:00",
          "pauses": [PAUSE, {**PAUSE, "scope": "c-2", "expires_at": None, "reason": "[red]rack[/red]"}],
          "in_flight": {"c-1": 2},
          "incidents": [{"id": 7, "cluster": "c-1", "reason": "storage_domain_unreachable",
                         "subject": "sd-1", "hosts": 40, "opened_at": "2026-11-24T11:58:00+00:00"}]}


@pytest.mark.parametrize(("text", "seconds"), [
    ("30m", 1800), ("2h", 7200), ("600s", 600), ("1d", 86400), ("1h30m", 5400), ("90", 90),
    (" 2H ", 7200),
])
def test_durations(text: str, seconds: float) -> None:
    assert ops.duration_s(text) == seconds


@pytest.mark.parametrize("argv", [
    ["pause"],
    ["pause", "--reason", "x", "--for", "soon"],
    ["pause", "--reason", "x", "--for", "0m"],
    ["pause", "--reason", "x", "--for", "-5m"],
    ["pause", "--reason", "x", "--for", ""],
    ["pause", "--reason", "x", "--for", "1.5h"],
    ["resume", "now"],
    ["hosts", "quarantine-clear"],
    ["hosts", "backoff-reset", "h-1", "h-2"],
])
def test_bad_safety_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == Exit.USAGE


def test_pause_and_resume_send_the_scope_reason_and_duration(capsys: pytest.CaptureFixture[str]) -> None:
    cluster = {**PAUSE, "scope": "c/1", "expires_at": None}
    api = Api({("PUT", "/api/v1/pause"): (200, PAUSE),
               ("PUT", "/api/v1/clusters/c%2F1/pause"): (200, cluster),
               ("DELETE", "/api/v1/pause"): (200, PAUSE),
               ("DELETE", "/api/v1/clusters/c%2F1/pause"): (200, cluster)})
    code, out, _ = run(["pause", "--reason", "storage work", "--for", "30m", "--api-url", URL],
                       api, capsys)
    assert code == Exit.OK
    assert "fleet-wide by alice until 2026-11-24 12:30:00 UTC: storage work" in out
    assert "autorecovery resume" in out
    code, out, _ = run(["pause", "--cluster", "c/1", "--reason", "rack", "--api-url", URL], api, capsys)
    assert code == Exit.OK and "cluster c/1" in out and "until lifted" in out
    assert "resume --cluster c/1" in out
    code, out, _ = run(["resume", "--api-url", URL], api, capsys)
    assert code == Exit.OK and "resumed" in out
    run(["resume", "--cluster", "c/1", "--api-url", URL], api, capsys)
    assert [(r.method, r.url.raw_path.decode()) for r in api.requests] == [
        ("PUT", "/api/v1/pause"), ("PUT", "/api/v1/clusters/c%2F1/pause"),
        ("DELETE", "/api/v1/pause"), ("DELETE", "/api/v1/clusters/c%2F1/pause")]
    assert json.loads(api.requests[0].content) == {"reason": "storage work", "duration_s": 1800.0}
    assert json.loads(api.requests[1].content) == {"reason": "rack"}
    assert api.requests[2].content == b""


def test_resume_without_a_pause_exits_4_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("DELETE", "/api/v1/pause"): (404, {
        "error": "not_paused", "message": "automatic activation is not paused fleet-wide",
        "field": None})})
    code, out, err = run(["resume", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND and out == ""
    assert "not paused fleet-wide" in err and "autorecovery safety" in err
    api = Api({("PUT", "/api/v1/clusters/c-9/pause"): (404, {
        "error": "not_found", "message": "cluster 'c-9' not found", "field": "cluster_id"})})
    code, _, err = run(["pause", "--cluster", "c-9", "--reason", "x", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND and "autorecovery clusters list" in err


@pytest.mark.parametrize(("command", "route", "said"), [
    ("quarantine-clear", "/api/v1/hosts/h-0001/quarantine/clear",
     "quarantine cleared (quarantined since 2026-11-24 12:00:00 UTC: flapping); backoff reset "
     "(after 5 failed attempt(s))"),
    ("backoff-reset", "/api/v1/hosts/h-0001/backoff/reset", "backoff reset (after 5 failed"),
])
def test_clearing_holds(command: str, route: str, said: str, capsys: pytest.CaptureFixture[str]) -> None:
    answer = {"host_id": "h-0001", "cleared": "x", "previous": {
        "failures": 5, "next_attempt_at": "2026-11-24T13:00:00+00:00",
        "quarantined_at": "2026-11-24T12:00:00+00:00", "quarantine_reason": "flapping"}}
    api = Api({("POST", route): (200, answer)})
    code, out, _ = run(["hosts", command, "h-0001", "--api-url", URL], api, capsys)
    assert code == Exit.OK and said in out.replace("\n", " ")
    code, out, _ = run(["hosts", command, "h-0001", "--json", "--api-url", URL], api, capsys)
    assert json.loads(out) == answer
    nothing = {**answer, "previous": {"failures": 0, "next_attempt_at": None,
                                      "quarantined_at": None, "quarantine_reason": None}}
    api = Api({("POST", route): (200, nothing)})
    _, out, _ = run(["hosts", command, "h-0001", "--api-url", URL], api, capsys)
    assert "had no backoff" in out


def test_safety_shows_the_gate_pauses_and_incidents(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/safety"): (200, SAFETY)})
    code, out, _ = run(["safety", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    for shown in ["monitoring_stale: 150 of 200", "150 of 200 observed", "c-1: 2", "storage work",
                  "[red]rack[/red]", "lifted by hand", "sd-1", "storage_domain_unreachable", "40"]:
        assert shown in out, shown
    code, out, _ = run(["safety", "--json", "--api-url", URL], api, capsys)
    assert json.loads(out) == SAFETY
    calm = {**SAFETY, "gate": None, "pauses": [], "incidents": [], "in_flight": {}}
    _, out, _ = run(["safety", "--api-url", URL], Api({("GET", "/api/v1/safety"): (200, calm)}), capsys)
    assert "allows automatic activation" in out and "no pause in force" in out
    assert "no open incident" in out


def test_a_hold_on_an_up_host_shows_in_hosts_list_and_safety(capsys: pytest.CaptureFixture[str]) -> None:
    page = {"hosts": [host("h-0001", "up", holds=["quarantine"]), host("h-0002", "up", holds=[])],
            "next_after": None}
    api = Api({("GET", "/api/v1/hosts"): (200, page)})
    code, out, _ = run(["hosts", "list", "--api-url", URL], api, capsys)
    assert code == Exit.OK and "HOLDS" in out
    [line] = [x for x in out.splitlines() if "h-0001" in x]
    assert "up" in line and "quarantine" in line
    assert "quarantine" not in next(x for x in out.splitlines() if "h-0002" in x)
    quarantine = {"hold": "quarantine", "hosts": 7, "by_status": {"up": 2, "non_operational": 5},
                  "examples": ["h-0001", "h-0004"]}
    held = {**SAFETY, "holds": [quarantine]}
    _, out, _ = run(["safety", "--api-url", URL], Api({("GET", "/api/v1/safety"): (200, held)}), capsys)
    assert "holds (whatever the status)" in out
    [line] = [x for x in out.splitlines() if x.strip().startswith("quarantine")]
    for shown in ("7", "non_operational 5, up 2", "h-0001, h-0004 …"):
        assert shown in line, shown
    _, out, _ = run(["safety", "--api-url", URL], Api({("GET", "/api/v1/safety"): (200, SAFETY)}), capsys)
    assert "no host carries a hold" in out


def test_plan_and_show_say_what_holds_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    plan = {"gate": SAFETY["gate"], "pauses": [PAUSE],
            "hosts": [{"host_id": "h-0001", "cluster": "c-1", "status": "non_operational",
                       "next_status": "non_operational", "action": "skip", "code": "paused",
                       "detail": "paused fleet-wide", "problems": []}], "activate": 0, "skip": 1}
    holds = {"failures": 3, "next_attempt_at": "2026-11-24T13:00:00+00:00",
             "quarantined_at": "2026-11-24T12:00:00+00:00", "quarantine_reason": "5 ends in 1h",
             "pause": PAUSE, "observer_gate": "quiet_period: waiting"}
    held_by = [
        {"hold": "quarantine", "detail": "5 ends in 1h", "since": "2026-11-24T12:00:00+00:00",
         "until": None},
        {"hold": "backoff", "detail": "3 failed attempt(s) in a row", "since": None,
         "until": "2026-11-24T13:00:00+00:00"},
        {"hold": "pause", "detail": "paused fleet-wide by alice: storage work", "since": None,
         "until": None},
        {"hold": "observer", "detail": "quiet_period: waiting", "since": None, "until": None},
    ]
    shown_host = {**detail(), "holds": holds, "held_by": held_by,
                  "last_clean_at": "2026-11-24T11:59:00+00:00"}
    api = Api({("GET", "/api/v1/plan"): (200, plan),
               ("GET", "/api/v1/hosts/h-0001"): (200, shown_host)})
    _, out, _ = run(["plan", "--api-url", URL], api, capsys)
    assert "observer holds automatic activation: monitoring_stale" in out
    assert "paused fleet-wide by alice" in out
    _, out, _ = run(["hosts", "show", "h-0001", "--api-url", URL], api, capsys)
    for shown in ["held: quarantine", "5 ends in 1h", "quarantine-clear", "3 failed attempt(s)",
                  "backoff-reset", "storage work", "quiet_period: waiting", "last clean",
                  "2026-11-24 11:59:00", "went out for"]:
        assert shown in out, shown


def test_show_lists_each_step_of_an_activation_with_its_task_id(capsys: pytest.CaptureFixture[str]) -> None:
    done = {**activation("done", "up"), "steps": [
        {"step": "send", "task_id": "act-1", "outcome": "sent", "at": "2026-11-24T12:00:00+00:00"},
        {"step": "check", "task_id": "task-b7", "outcome": "up", "at": "2026-11-24T12:00:02+00:00"},
    ]}
    api = Api({("GET", "/api/v1/hosts/h-0001"): (200, detail("up", None, [done]))})
    code, out, _ = run(["hosts", "show", "h-0001", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    assert "activation steps" in out and "task-b7" in out and "check" in out
