"""The operator CLI as a subprocess against the API over HTTP, a real worker and the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cli.ops import Exit
from tests.integration.api_fixtures import ApiServer, api, free_port  # noqa: F401 - fixture
from tests.integration.conftest import host_status, settle
from tests.support.processes import REPO
from tests.support.servers import Servers


@dataclass
class Result:
    """What one CLI run did."""

    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        """Parse stdout as the one JSON document it should be."""
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"{' '.join(self.argv)} -> {self.code}\nstdout:\n{self.out}\nstderr:\n{self.err}"


Cli = Callable[..., Result]


@pytest.fixture
def cli(servers: Servers, api: ApiServer, tmp_path: Path) -> Cli:  # noqa: F811 - the fixture
    """Run ``python -m cli`` with the API's URL and a token in the environment."""

    def run(*argv: str, who: str | None = "alice", timeout_s: float = 90.0, **env: str) -> Result:
        environ = servers.env(AUTORECOVERY_API_URL=api.base_url,
                              AUTORECOVERY_TOKEN=api.tokens[who] if who else "",
                              AUTORECOVERY_DATA_DIR=str(tmp_path / "data"), **env)
        proc = subprocess.run(
            [sys.executable, "-m", "cli", *argv], cwd=REPO, env=environ,
            capture_output=True, text=True, timeout=timeout_s, check=False,
        )
        result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
        for token in api.tokens.values():
            assert token not in proc.stdout + proc.stderr, f"a token was printed by {argv}"
        assert "Traceback" not in proc.stderr, str(result)
        return result

    return run


def expect(result: Result, code: int) -> Result:
    """Assert the exit code, showing the output when it is not the one expected."""
    assert result.code == code, str(result)
    return result


def test_list_and_show(sim: Any, worker: Any, tick: Any, deps: Any, cli: Cli) -> None:
    sim(hosts=3)
    tick()
    settle(deps)

    listed = expect(cli("hosts", "list", "--json"), Exit.OK).json()
    assert [(h["id"], h["status"]) for h in listed["hosts"]] == [
        ("h-0001", "up"), ("h-0002", "up"), ("h-0003", "up")]
    table = expect(cli("hosts", "list"), Exit.OK).out
    assert "h-0003" in table and "3 host(s): 3 up" in table
    assert expect(cli("hosts", "list", "--status", "non_operational", "--json"),
                  Exit.OK).json()["hosts"] == []
    assert len(expect(cli("hosts", "list", "--limit", "2", "--json"), Exit.OK).json()["hosts"]) == 2

    tick()  # the CLI runs above took seconds on a loaded machine: a fresh report, not a stale one
    settle(deps)
    shown = expect(cli("hosts", "show", "h-0002", "--json", who="vic"), Exit.OK).json()
    assert (shown["id"], shown["status"], shown["problems"]) == ("h-0002", "up", [])
    assert shown["recent_activations"][0]["state"] == "done"
    assert "h-0002" in expect(cli("hosts", "show", "h-0002"), Exit.OK).out

    missing = expect(cli("hosts", "show", "h-9999"), Exit.NOT_FOUND)
    assert "h-9999" in missing.err and "hosts list" in missing.err


def test_auth_usage_and_unreachable_exit_codes(sim: Any, worker: Any, cli: Cli, tmp_path: Path) -> None:
    sim(hosts=1)
    assert "token" in expect(cli("hosts", "list", who=None), Exit.AUTH).err
    expect(cli("hosts", "list", "--token", "not-a-valid-token-at-all"), Exit.AUTH)
    viewer = expect(cli("hosts", "autorecovery", "h-0001", "off", who="vic"), Exit.AUTH)
    assert "admin" in viewer.err
    expect(cli("hosts", "activate", "h-0001", who="vic"), Exit.AUTH)
    expect(cli("hosts", "list", "--status", "sideways"), Exit.USAGE)
    bad = expect(cli("audit", "--since", "2026-01-01T00:00:00"), Exit.USAGE)  # no time zone
    assert "since" in bad.err
    gone = expect(cli("hosts", "list", "--api-url", f"http://127.0.0.1:{free_port()}"),
                  Exit.UNREACHABLE)
    assert "cannot reach the API" in gone.err


def test_autorecovery_off_then_manual_activation_with_wait(
    sim: Any, worker: Any, tick: Any, deps: Any, cli: Cli
) -> None:
    client = sim(hosts=2)
    tick()
    settle(deps)
    sd = client.fleet()["clusters"][0]["storage_domains"][0]
    client.inject("sd_down", hosts=["h-0001"], target=sd)
    tick()
    assert host_status(deps, "h-0001")["status"] == "non_operational"

    off = expect(cli("hosts", "autorecovery", "h-0001", "off"), Exit.OK)
    assert "autorecovery off" in off.out
    assert host_status(deps, "h-0001")["autorecovery"] is False
    client.clear(hosts=["h-0001"])
    tick()
    settle(deps)
    assert host_status(deps, "h-0001")["status"] == "non_operational"  # recoverable, flag off
    shown = expect(cli("hosts", "show", "h-0001", "--json"), Exit.OK).json()
    assert shown["why_not_recovered"]["code"] == "autorecovery_off"
    planned = expect(cli("plan", "--json"), Exit.OK).json()
    assert {e["host_id"]: e["code"] for e in planned["hosts"]}["h-0001"] == "autorecovery_off"

    waited = expect(cli("hosts", "activate", "h-0001", "--wait", "--timeout", "30"), Exit.OK)
    assert "h-0001 is up" in waited.out
    assert "done" in waited.err  # the progress lines
    row = host_status(deps, "h-0001")
    assert (row["status"], row["autorecovery"]) == ("up", False)

    again = expect(cli("hosts", "activate", "h-0001"), Exit.CONFLICT)
    assert "already up" in again.err
    expect(cli("hosts", "autorecovery", "h-0001", "on"), Exit.OK)
    assert host_status(deps, "h-0001")["autorecovery"] is True

    audit = expect(cli("audit", "--host", "h-0001", "--actor", "alice", "--json"), Exit.OK).json()
    events = [e["event"] for e in reversed(audit["entries"])]
    assert events[0] == "autorecovery_disabled" and events[-1] == "autorecovery_enabled"
    assert {"activation_queued", "activation_succeeded", "activation_refused"} <= set(events)
    assert "autorecovery_enabled" in expect(cli("audit", "--host", "h-0001", "--since", "1h"),
                                            Exit.OK).out


def test_a_failed_activation_exits_1_and_leaves_the_host_out(
    sim: Any, worker: Any, tick: Any, deps: Any, cli: Cli
) -> None:
    client = sim(hosts=1)
    tick()
    settle(deps)
    client.inject("kvm_down", hosts=["h-0001"])
    tick()
    client.clear(hosts=["h-0001"])
    client.inject("init_fail", hosts=["h-0001"], reason="network_unreachable")

    # The stored report still shows kvm down: the admin is told, and forces the init.
    refused = expect(cli("hosts", "activate", "h-0001", "--wait"), Exit.CONFLICT)
    assert "kvm_not_running" in refused.err and "--force" in refused.err
    failed = expect(cli("hosts", "activate", "h-0001", "--force", "--wait", "--json"), Exit.FAILED)
    body = failed.json()
    assert body["activation"]["state"] == "failed"
    assert body["host"]["status"] == "non_operational"
    assert "h-0001 is not up" in failed.err and "hosts show h-0001" in failed.err
    row = host_status(deps, "h-0001")
    assert (row["status"], row["reason"]) == ("non_operational", "network_unreachable")


def test_wait_timeout_exits_3_and_the_activation_goes_on(
    sim: Any, worker: Any, tick: Any, deps: Any, cli: Cli
) -> None:
    client = sim(hosts=1)
    tick()
    settle(deps)
    client.inject("kvm_down", hosts=["h-0001"])
    tick()
    client.clear(hosts=["h-0001"])
    client.inject("init_delay", hosts=["h-0001"], seconds=2.0)

    late = expect(cli("hosts", "activate", "h-0001", "--force", "--wait", "--timeout", "0.5"), Exit.TIMEOUT)
    assert "still" in late.err and "hosts show h-0001" in late.err
    settle(deps)
    assert host_status(deps, "h-0001")["status"] == "up"
