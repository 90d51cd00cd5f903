"""``autorecovery up`` before and after the run: the port check, the summary's split, the verdict."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cli.main import main
from harness.sim.record import format_time
from harness.up.preflight import UpOptions, require_free_port
from harness.up.prepare import broker_line
from harness.up.summary import classify, summary_lines
from harness.up.verdict import Check, clock, judge_inits, verdict
from models.errors import InvalidInput


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something listens on (not ours to serve)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_a_port_in_use_is_refused_naming_the_port_and_the_flag(busy_port: int) -> None:
    with pytest.raises(InvalidInput) as refused:
        require_free_port("127.0.0.1", busy_port, "--api-port")
    assert refused.value.field == "--api-port"
    assert str(busy_port) in refused.value.message and "--api-port" in refused.value.message


def test_a_free_port_passes_and_stays_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    require_free_port("127.0.0.1", port, "--api-port")
    with socket.socket() as again:  # the check let it go
        again.bind(("127.0.0.1", port))


def test_up_refuses_a_busy_api_port_before_starting_anything(
    busy_port: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr("harness.up.demo.servers", lambda *a: started.append("servers"))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(["up", "--api-port", str(busy_port), "--duration", "1"])
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == 2 and started == []
    err = capsys.readouterr().err
    assert f"port {busy_port}" in err and "--api-port" in err


def test_up_refuses_a_busy_flower_port(busy_port: int) -> None:
    from autorecovery.settings import Settings
    from harness.up.demo import check_ports

    with pytest.raises(InvalidInput) as refused:
        check_ports(UpOptions(api_port=1, flower=True, flower_port=busy_port), Settings(api_port=1))
    assert refused.value.field in ("--api-port", "--flower-port")


def _plan(host_id: str, status: str, code: str) -> dict[str, str]:
    return {"host_id": host_id, "status": status, "code": code, "detail": f"{code} detail"}


PLAN = [
    _plan("h1", "up", "healthy"),
    _plan("h2", "non_operational", "quarantined"),
    _plan("h3", "non_operational", "backoff"),
    _plan("h4", "non_operational", "paused"),
    _plan("h5", "error", "error_period"),
    _plan("h6", "non_operational", "activate"),
    _plan("h7", "non_operational", "has_problems"),
    _plan("h8", "non_responsive", "activation_in_flight"),
]


def test_the_summary_separates_held_by_safety_from_left_behind() -> None:
    found = classify(PLAN)
    assert sorted(found["held_by_safety"]) == ["h2", "h3", "h4", "h5"]
    assert sorted(found["left_behind"]) == ["h6", "h8"]
    assert found["down_with_a_reason"] == {"h7": "has_problems: has_problems detail"}
    assert found["held_by_safety"]["h2"] == "quarantined: quarantined detail"


def _summary(plan: list[dict[str, str]], **counts: object) -> dict[str, object]:
    return {"overlapping_inits": 0, "auto_inits_on_a_report_with_a_problem": [], **counts, **classify(plan)}


def test_hosts_held_by_safety_never_fail_the_run() -> None:
    held = [p for p in PLAN if p["code"] in ("quarantined", "backoff", "paused", "error_period")]
    assert verdict(_summary(held), settled=True) == []


def test_left_behind_fails_only_a_settled_run_and_safety_bars_always() -> None:
    assert verdict(_summary(PLAN), settled=False) == []  # Ctrl-C: recoveries were cut short
    assert verdict(_summary(PLAN), settled=True) == ["host(s) left behind: h6, h8"]
    broken = verdict(_summary([], overlapping_inits=2), settled=False)
    assert broken == ["2 overlapping init(s) on one host"]


def test_the_broker_url_is_printed_without_its_password() -> None:
    line = broker_line("redis://:s3cret-pass@127.0.0.1:6379/1")
    assert "s3cret-pass" not in line and "127.0.0.1:6379/1" in line
    assert "guest:guest" not in broker_line("amqp://guest:guest@rabbit:5672//")


# --- the verdict on automatic inits: judged on what the product could know -----------------

T = datetime(2026, 12, 7, 3, 0, 0, 100_000, tzinfo=UTC)


def _ms(n: float) -> datetime:
    return T + timedelta(milliseconds=n)


def _init(
    activation: str, at_ms: float, served: list[tuple[float, str | None]], faulted: bool = True
) -> dict[str, Any]:
    """A simulator init record, with the host's reports served before it."""
    return {
        "host_id": "h-0042",
        "activation_id": activation,
        "started_at": format_time(_ms(at_ms)),
        "faulted": faulted,
        "reports_before": [{"at": format_time(_ms(ms)), "problem": p} for ms, p in served],
    }


def test_a_fault_that_came_after_the_clean_check_is_a_race_not_a_broken_rule() -> None:
    # The worker read a clean report at +0 ms; the chaos injected kvm_down at +10 ms; the init
    # arrived at +30 ms and found it: the simulator marks it faulted, the product could not know.
    # A tick's pull at +20 ms saw the fault: it is not the report the worker checked.
    raced = _init("act-1", 30, [(-10_000, None), (0, None), (20, "kvm_not_running: kvm is not running")])
    judged = judge_inits([raced], {"act-1": Check(checked_at=_ms(2), report_at=_ms(0))})
    assert judged.broken == []
    assert judged.raced == [
        "host h-0042, activation act-1: clean report, the fault came in the 28 ms after; "
        f"checked at {clock(_ms(2))} (report of {clock(_ms(0))}), init at {clock(_ms(30))}"
    ]
    summary = _summary([], faults_between_check_and_init=judged.raced)
    assert verdict(summary | {"auto_inits_on_a_report_with_a_problem": judged.broken}, settled=True) == []


def test_an_init_after_a_report_that_showed_the_problem_breaks_the_rule_and_names_it() -> None:
    seen = _init("act-2", 30, [(0, "kvm_not_running: kvm is not running")])
    judged = judge_inits([seen], {"act-2": Check(checked_at=_ms(2), report_at=_ms(0))})
    assert judged.raced == []
    assert judged.broken == [
        "host h-0042, activation act-2: the report showed kvm_not_running: kvm is not running; "
        f"checked at {clock(_ms(2))} (report of {clock(_ms(0))}), init at {clock(_ms(30))}"
    ]
    broken = verdict(_summary([], auto_inits_on_a_report_with_a_problem=judged.broken), settled=False)
    assert broken == [f"automatic init of a host whose checked report showed a problem: {judged.broken[0]}"]
    assert "bar" not in " ".join(broken)


def test_an_init_with_no_record_of_its_check_is_not_given_the_benefit_of_the_doubt() -> None:
    unchecked = _init("act-3", 30, [(0, None)])
    unknown_report = _init("act-4", 30, [(0, None)])
    clean_init = _init("act-5", 30, [(0, "kvm_not_running: x")], faulted=False)
    judged = judge_inits(
        [unchecked, unknown_report, clean_init], {"act-4": Check(checked_at=_ms(2), report_at=_ms(-5))}
    )
    assert [b.split(":")[0] for b in judged.broken] == [
        "host h-0042, activation act-3",
        "host h-0042, activation act-4",
    ]
    assert "no record of the report it checked" in judged.broken[0]
    assert "no record of that report" in judged.broken[1]


def test_the_end_of_run_summary_groups_down_hosts_and_names_a_few() -> None:
    plan = [
        {"host_id": f"h-{i:04d}", "status": "non_responsive", "code": "agent_unreachable", "detail": "no"}
        for i in range(2100)
    ] + [{"host_id": "h-9999", "status": "non_operational", "code": "quarantined", "detail": "flapping"}]
    summary = _summary(
        plan,
        faults_injected=7,
        activations=5,
        recoveries=4,
        hosts_by_status={"up": 3, "non_responsive": 2100},
        faults_between_check_and_init=[],
    )
    lines = summary_lines(summary)
    assert lines == [
        "faults injected 7, activations 5, recoveries 4, overlapping inits 0",
        "hosts: non_responsive 2100, up 3",
        "held by safety (by design, not a failure): 1 host(s)",
        "  quarantined: 1 (h-9999), e.g. flapping",
        "down with a reason: 2100 host(s)",
        "  agent_unreachable: 2100 (h-0000, h-0001, h-0002 and 2097 more), e.g. no",
    ]
