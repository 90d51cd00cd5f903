"""``autorecovery up`` before and after the run: the port check, the summary's split, the verdict."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator

import pytest

from cli.main import main
from harness.up.preflight import UpOptions, require_free_port
from harness.up.prepare import broker_line
from harness.up.summary import classify, verdict
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


def _summary(plan: list[dict[str, str]], **counts: int) -> dict[str, object]:
    return {"overlapping_inits": 0, "auto_inits_on_hosts_with_a_problem": 0, **counts, **classify(plan)}


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
