"""What an SRE notices in the first hour: errors that name what is wrong, times and reasons said once."""

from __future__ import annotations

import json

import httpx
import pytest

from cli.ops import Exit
from cli.ops.render import reason_text, span, when
from tests.unit.test_cli_ops import URL, Api, activation, clean_env, detail, run, waiting_api  # noqa: F401

HTML = "<!doctype html><html><head><title>Grafana</title></head><body>" + "x" * 500 + "</body></html>"


@pytest.mark.parametrize(
    ("status", "expected"), [(200, Exit.USAGE), (404, Exit.USAGE), (502, Exit.UNREACHABLE)]
)
def test_a_url_that_is_not_the_api_is_named_and_its_page_not_dumped(
    status: int, expected: Exit, capsys: pytest.CaptureFixture[str]
) -> None:
    page = httpx.Response(status, text=HTML, headers={"content-type": "text/html; charset=utf-8"})
    code, out, err = run(["hosts", "list", "--api-url", URL], Api({("GET", "/api/v1/hosts"): page}), capsys)
    assert code == expected, err
    assert f"{URL} answered HTTP {status} with text/html" in err, err
    assert "<html" not in err and "Grafana" not in err and out == ""


def test_an_unknown_cluster_filter_exits_4_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    missing = (404, {"error": "not_found", "message": "cluster 'nope' not found", "field": "cluster_id"})
    api = Api({("GET", "/api/v1/hosts"): missing})
    code, out, err = run(["hosts", "list", "--cluster", "nope", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND and "cluster 'nope' not found" in err and "clusters list" in err
    assert out == ""


def test_a_failed_activation_is_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    api = waiting_api(detail("non_operational", None, [activation("failed", "failed", "init refused")]))
    code, _, err = run(["hosts", "activate", "h-0001", "--wait", "--api-url", URL], api, capsys)
    assert code == Exit.FAILED
    assert "activation failed (init refused)" in err and "failed, failed" not in err, err


def test_hints_name_the_real_host_not_a_placeholder(capsys: pytest.CaptureFixture[str]) -> None:
    held = {**detail(), "id": "h-0042", "held_by": [
        {"hold": "quarantine", "detail": "flapping", "since": None, "until": None},
        {"hold": "backoff", "detail": "3 failed", "since": None, "until": None}]}
    api = Api({("GET", "/api/v1/hosts/h-0042"): (200, held)})
    _, out, _ = run(["hosts", "show", "h-0042", "--api-url", URL], api, capsys)
    assert "quarantine-clear h-0042" in out and "backoff-reset h-0042" in out
    assert "quarantine-clear ID" not in out and "backoff-reset ID" not in out
    busy = (409, {"error": "activation_in_flight", "message": "held", "field": None, "holder": {}})
    _, _, err = run(["hosts", "activate", "h-0042", "--api-url", URL],
                    Api({("POST", "/api/v1/hosts/h-0042/activate"): busy}), capsys)
    assert "hosts show ID" not in err


def test_a_reason_is_not_repeated(capsys: pytest.CaptureFixture[str]) -> None:
    silent = {**detail(), "last_decision": {"code": "agent_unreachable", "at": None,
                                            "detail": "agent_unreachable: cannot connect to 10.0.0.7:8900: "
                                                      "connection refused"},
              "why_not_recovered": {"code": "agent_unreachable",
                                    "detail": "agent_unreachable: cannot connect to 10.0.0.7:8900: "
                                              "connection refused"}}
    api = Api({("GET", "/api/v1/hosts/h-0001"): (200, silent)})
    _, out, _ = run(["hosts", "show", "h-0001", "--api-url", URL], api, capsys)
    assert "agent_unreachable: cannot connect to 10.0.0.7:8900: connection refused" in out
    assert "agent_unreachable: agent_unreachable" not in out
    kvm = "kvm_not_running: kvm is down"
    assert reason_text("has_problems", kvm) == f"has_problems: {kvm}"
    assert reason_text("backoff", None) == "backoff"


def test_times_carry_their_zone_and_whole_seconds() -> None:
    assert str(when("2026-11-24T12:00:00.123456+00:00")) == "2026-11-24 12:00:00 UTC"
    assert str(when("2026-11-24T13:00:00.5+01:00")) == "2026-11-24 12:00:00 UTC"
    assert str(when(None)) == "-"
    assert [span(s) for s in (1.25, 65, 7500, 3 * 86400 + 4 * 3600)] == ["1.2s", "1m05s", "2h05m", "3d04h"]


@pytest.mark.parametrize(("words", "seconds"), [
    (["5", "minutes"], 300), (["5m"], 300), (["2h"], 7200), (["90s"], 90),
    (["2", "hours", "30", "min"], 9000),
])
def test_pause_for_takes_durations_as_people_write_them(
    words: list[str], seconds: int, capsys: pytest.CaptureFixture[str]
) -> None:
    pause = {"scope": "fleet", "reason": "x", "owner": "alice", "created_at": "2026-11-24T12:00:00+00:00",
             "expires_at": "2026-11-24T12:05:00+00:00"}
    api = Api({("PUT", "/api/v1/pause"): (200, pause)})
    code, _, err = run(["pause", "--reason", "x", "--for", *words, "--api-url", URL], api, capsys)
    assert code == Exit.OK, err
    assert json.loads(api.requests[0].content)["duration_s"] == seconds


def test_a_bad_duration_names_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["pause", "--reason", "x", "--for", "5", "fortnights"])
    assert exited.value.code == Exit.USAGE
    err = capsys.readouterr().err
    assert "argument --for: '5 fortnights' is not a duration" in err
    assert "usage: autorecovery pause" in err


