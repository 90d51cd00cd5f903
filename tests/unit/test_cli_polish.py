"""What an SRE notices in the first hour: errors that name what is wrong, times and reasons said once."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from cli.ops import Exit
from cli.ops.render import reason_text, span, when
from tests.unit.test_cli_ops import (  # noqa: F401 - clean_env is autouse
    URL,
    Api,
    activation,
    clean_env,
    detail,
    host,
    run,
    waiting_api,
)

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


def test_a_running_activation_line_says_its_state_once(capsys: pytest.CaptureFixture[str]) -> None:
    shown = {**detail(activation=activation("failed", "failed", "init refused"))}
    _, out, _ = run(["hosts", "show", "h-0001", "--api-url", URL],
                    Api({("GET", "/api/v1/hosts/h-0001"): (200, shown)}), capsys)
    assert "act-1 failed (init refused)" in out and "failed: failed" not in out


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




# -- hosts list: columns, filters, watch -----------------------------------------------------

DATE = "Tue, 24 Nov 2026 14:30:05 GMT"  # the API's clock: 2h30m05s after the hosts went out


def _fleet() -> list[dict[str, Any]]:
    return [
        host_("h-0001", "up", holds=["quarantine"], last_decision="healthy"),
        host_("h-0002", "non_operational", holds=["backoff"], last_decision="backoff"),
        host_("h-0003", "non_operational", holds=[], last_decision="has_problems"),
        host_("h-0004", "unassigned", last_decision=None),  # an API without ``holds``: tolerated
    ]


def host_(host_id: str, status: str, **extra: Any) -> dict[str, Any]:
    body = host(host_id, status, status_changed_at="2026-11-24T12:00:00+00:00", **extra)
    if "holds" not in extra:
        body.pop("holds", None)
    return body


def _listing(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"hosts": _fleet(), "next_after": None}, headers={"date": DATE})


def test_list_shows_down_for_holds_and_wide_columns(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/hosts"): _listing})
    code, out, _ = run(["hosts", "list", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    assert "DOWN FOR" in out and "HOLDS" in out and "AGENT" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("h-")}
    assert "2h30m" in rows["h-0002"] and "backoff" in rows["h-0002"]
    assert "2h30m" not in rows["h-0001"] and "quarantine" in rows["h-0001"]  # up: not down
    assert "2h30m" not in rows["h-0004"]  # never up: not "down"
    code, out, _ = run(["hosts", "list", "-o", "wide", "--api-url", URL], api, capsys)
    assert "AGENT" in out and "http://sim/h" in out and "2026-11-24 12:00:00 UTC" in out
    code, out, _ = run(["hosts", "list", "-o", "json", "--api-url", URL], api, capsys)
    assert [h["id"] for h in json.loads(out)["hosts"]] == ["h-0001", "h-0002", "h-0003", "h-0004"]


@pytest.mark.parametrize(("argv", "ids"), [
    (["--held"], ["h-0001", "h-0002"]),
    (["--held", "backoff"], ["h-0002"]),
    (["--decision", "has_problems"], ["h-0003"]),
    (["--decision", "backoff", "--held"], ["h-0002"]),
    (["--held", "--limit", "1"], ["h-0001"]),
])
def test_decision_and_held_filters(
    argv: list[str], ids: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    api = Api({("GET", "/api/v1/hosts"): _listing})
    code, out, _ = run(["hosts", "list", *argv, "--json", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    assert [h["id"] for h in json.loads(out)["hosts"]] == ids


def test_watch_draws_again_until_its_count(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/hosts"): _listing})
    code, out, _ = run(["hosts", "list", "--watch", "0.01", "--watch-count", "3", "--json", "--api-url", URL],
                       api, capsys)
    assert code == Exit.OK and len(api.requests) == 3
    assert [len(json.loads(line)["hosts"]) for line in out.splitlines()] == [4, 4, 4]
    code, out, _ = run(["safety", "-w", "0.01", "--watch-count", "2", "--api-url", URL],
                       Api({("GET", "/api/v1/safety"): (200, SAFE)}), capsys)
    assert code == Exit.OK and out.count("every 0.01s: autorecovery safety") == 2


@pytest.mark.parametrize("argv", [["--decision", "bakoff"], ["--held", "quarantin"]])
def test_an_unknown_filter_value_is_refused_naming_it(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["hosts", "list", *argv])
    assert exited.value.code == Exit.USAGE and f"invalid choice: '{argv[1]}'" in capsys.readouterr().err


def test_ctrl_c_ends_a_watch_with_0_and_an_outage_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 2:
            raise httpx.ConnectError("refused")
        if len(calls) == 4:
            raise KeyboardInterrupt
        return _listing(request)

    code, out, err = run(["hosts", "list", "--watch", "0.01", "--api-url", URL], flaky, capsys)
    assert code == Exit.OK and len(calls) == 4
    assert "cannot reach the API" in err and out.count("h-0003") == 2
    gone = Api({("GET", "/api/v1/hosts"): (404, {"error": "not_found", "message": "cluster 'x' not found",
                                                 "field": "cluster_id"})})
    code, _, _ = run(["hosts", "list", "--cluster", "x", "--watch", "0.01", "--api-url", URL], gone, capsys)
    assert code == Exit.NOT_FOUND  # watching will not make it exist


SAFE = {"gate": None, "silent_hosts": 0, "observed_hosts": 50, "last_full_tick_at": None, "pauses": [],
        "in_flight": {"c-1": 2}, "incidents": [],
        "clusters": [{"cluster": "c-1", "hosts": 50, "up": 47, "limit": 12, "in_flight": 2},
                     {"cluster": "c-2", "hosts": 3, "up": 3, "limit": 1, "in_flight": 0}],
        "holds": [{"hold": "quarantine", "hosts": 2, "by_status": {"up": 1, "non_operational": 1},
                   "examples": ["h-0007", "h-0009"]}]}


def test_safety_says_each_clusters_health_like_a_machine_health_check(
    capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["safety", "--api-url", URL], Api({("GET", "/api/v1/safety"): (200, SAFE)}), capsys)
    assert code == Exit.OK
    out = re.sub(r"  +", "  ", out)
    assert "cluster c-1  healthy 47 of 50, limit 12 (2 activating)" in out
    assert "cluster c-2  healthy 3 of 3, limit 1" in out
    old = {k: v for k, v in SAFE.items() if k not in ("clusters", "holds")}
    code, out, _ = run(["safety", "--api-url", URL], Api({("GET", "/api/v1/safety"): (200, old)}), capsys)
    assert code == Exit.OK and "healthy" not in out  # an older API: nothing to say, nothing broken


# -- audit -----------------------------------------------------------------------------------


def entry(entry_id: int, event: str = "status_changed", **details: Any) -> dict[str, Any]:
    return {"id": entry_id, "at": "2026-11-24T12:00:00.250000+00:00", "object_type": "host",
            "object_id": "h-0001", "event": event, "actor": "auto", "reason": "activation_failed",
            "details": details}


def test_audit_details_read_as_key_value_pairs(capsys: pytest.CaptureFixture[str]) -> None:
    e = entry(7, **{"from": "initializing", "to": "non_operational",
                    "detail": "init refused: storage domain sd-1 unreachable", "problems": ["kvm", "sd-1"],
                    "fence": 42, "forced": False, "holder": {"host_id": "h-0001"}})
    api = Api({("GET", "/api/v1/audit"): (200, {"entries": [e], "next_before": None})})
    code, out, _ = run(["audit", "--api-url", URL], api, capsys)
    assert code == Exit.OK
    flat = re.sub(r"\s+", " ", out)
    for shown in ('from=initializing to=non_operational', 'detail="init refused: storage domain sd-1 '
                  'unreachable"', "problems=kvm,sd-1", "fence=42", "forced=false",
                  'holder={"host_id": "h-0001"}', "2026-11-24 12:00:00 UTC"):
        assert shown in flat, (shown, out)
    assert '{"from"' not in out and ".250000" not in out


def test_audit_events_lists_every_event_one_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    from models.audit_events import AUDIT_EVENTS

    api = Api({})
    code, out, _ = run(["audit", "--events", "--api-url", URL], api, capsys)
    assert code == Exit.OK and api.requests == []  # the list is the CLI's own, no API call
    lines = out.splitlines()
    assert [line.split()[0] for line in lines] == list(AUDIT_EVENTS)
    assert all(len(line.split(None, 1)) == 2 for line in lines)


def test_an_unknown_event_filter_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["audit", "--event", "activation_suceeded"])
    assert exited.value.code == Exit.USAGE and "activation_suceeded" in capsys.readouterr().err


def test_audit_follow_prints_new_entries_oldest_first_until_ctrl_c(
    capsys: pytest.CaptureFixture[str]
) -> None:
    pages = [
        {"entries": [entry(3), entry(2)], "next_before": 2},  # the last --limit entries
        {"entries": [entry(5, "activation_started"), entry(4, "activation_queued"), entry(3)],
         "next_before": 3},
        {"entries": [entry(5, "activation_started")], "next_before": None},  # nothing new
        KeyboardInterrupt(),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        page = pages.pop(0)
        if isinstance(page, BaseException):
            raise page
        return httpx.Response(200, json=page)

    code, out, _ = run(["audit", "--follow", "0.01", "--limit", "2", "--api-url", URL], answer, capsys)
    assert code == Exit.OK and pages == []
    ids = [int(m) for m in re.findall(r"#(\d+)", out)]
    assert ids == [2, 3, 4, 5], out
    assert "activation_queued by auto (activation_failed)" in out


def test_audit_follow_json_is_one_line_per_entry(capsys: pytest.CaptureFixture[str]) -> None:
    api = Api({("GET", "/api/v1/audit"): (200, {"entries": [entry(9), entry(8)], "next_before": None})})
    argv = ["audit", "-f", "0.01", "--follow-count", "1", "--json", "--api-url", URL]
    code, out, _ = run(argv, api, capsys)
    assert code == Exit.OK
    assert [json.loads(line)["id"] for line in out.splitlines()] == [8, 9]


def test_audit_about_an_unknown_object_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    missing = (404, {"error": "not_found", "message": "host 'nope' not found", "field": "host_id"})
    no_domain = {**missing[1], "message": "storage_domain 'sd-9' not found", "field": "storage_domain_id"}
    api = Api({("GET", "/api/v1/audit"): (200, {"entries": [], "next_before": None}),
               ("GET", "/api/v1/hosts/nope"): missing,
               ("GET", "/api/v1/storage-domains/sd-9"): (404, no_domain)})
    code, out, err = run(["audit", "--host", "nope", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND and "host 'nope' not found" in err and out == ""
    code, _, err = run(["audit", "--storage-domain", "sd-9", "--api-url", URL], api, capsys)
    assert code == Exit.NOT_FOUND and "sd-9" in err
    before = len(api.requests)
    code, _, _ = run(["audit", "--host", "nope", "--event", "charged", "--api-url", URL], api, capsys)
    assert code == Exit.OK and len(api.requests) == before + 1  # another filter may rightly find nothing


def _terminal_output() -> tuple[Any, Any]:
    """An Output whose consoles are a 24-row terminal writing into one buffer."""
    import io

    from rich.console import Console

    from cli.ops.render import Output

    screen = io.StringIO()
    shown = Output(json_mode=False)
    shown.out = Console(file=screen, force_terminal=True, width=80, height=24, highlight=False)
    shown.err = Console(file=screen, force_terminal=True, width=80, height=24, highlight=False, stderr=True)
    return shown, screen


def test_a_watch_on_a_terminal_redraws_in_place_and_shows_the_cursor_again() -> None:
    from cli.ops.client import ApiFailure
    from cli.ops.live import every

    # ECMA-48: cursor home, erase display, erase to end of line, erase below; xterm: cursor off/on.
    HOME, CLEAR_SCREEN, ERASE_LINE_END, ERASE_BELOW = "\x1b[H", "\x1b[2J", "\x1b[K", "\x1b[J"
    HIDE_CURSOR, SHOW_CURSOR = "\x1b[?25l", "\x1b[?25h"

    shown, screen = _terminal_output()
    rounds: list[int] = []

    def draw() -> int:
        rounds.append(1)
        if len(rounds) == 2:
            raise ApiFailure(Exit.UNREACHABLE, "cannot reach the API")
        if len(rounds) == 4:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a round
        shown.say(f"round {len(rounds)}")
        return 0

    assert every(shown, "autorecovery safety", draw, 0.0, None) == Exit.OK
    text = screen.getvalue()
    assert text.startswith(HIDE_CURSOR + HOME + CLEAR_SCREEN)  # the screen is cleared once, first
    assert text.count(CLEAR_SCREEN) == 1 and text.count("\x1b[H\x1b[2J") == 1
    frames = text.removeprefix(HIDE_CURSOR + HOME + CLEAR_SCREEN).removesuffix(SHOW_CURSOR).split(HOME)
    assert frames[0] == "" and len(frames) == 4  # three whole rounds drawn from the top-left corner
    for frame, expected in zip(frames[1:], ["round 1", "cannot reach the API", "round 3"], strict=True):
        assert frame.endswith(ERASE_LINE_END + "\n" + ERASE_BELOW)  # leftovers of a longer round erased
        assert expected in frame and all(line.endswith(ERASE_LINE_END) for line in frame.splitlines()[:-1])
    assert text.endswith(SHOW_CURSOR)  # the terminal is given back on Ctrl-C
