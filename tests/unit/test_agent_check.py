"""``autorecovery agent-check`` as a subprocess against the simulator (v2, v1) and broken agents."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from harness.agentcheck import READ_ONLY
from harness.sim import FaultKind, FaultSpec, Fleet, RunningSimulator, start_in_thread
from harness.sim.record import format_time
from harness.sim.runner import start_app_in_thread

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "agent-check-test-token"  # noqa: S105 - a test token


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def _agent_check(
    url: str, *args: str, fence_checks: bool = True
) -> tuple[int, dict[str, tuple[str, str]], str]:
    """Run the CLI (``--fence-checks`` unless told not to); return its exit code, each check's
    (verdict, why) and the whole output."""
    if fence_checks:
        args = ("--fence-checks", *args)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "agent-check", url, "--init-wait", "10", *args],
        capture_output=True, text=True, timeout=90, env=env, check=False,
    )  # fmt: skip
    checks = {}
    for line in done.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        if verdict in ("PASS", "FAIL", "SKIP"):
            name, _, why = rest.partition(": ")
            checks[name] = (verdict, why)
    return done.returncode, checks, done.stdout + done.stderr


@pytest.fixture
def sim() -> Iterator[tuple[Fleet, RunningSimulator]]:
    fleet = Fleet.generate(hosts=2, clusters=1)
    fleet.inject(FaultSpec(FaultKind.INIT_DELAY, seconds=0.5), ["h-0001"])
    server = start_in_thread(fleet, token=TOKEN)
    yield fleet, server
    server.stop()


def test_by_default_nothing_on_the_agent_changes(
    sim: tuple[Fleet, RunningSimulator], token_file: Path
) -> None:
    fleet, server = sim
    fleet.raise_fence("h-0001", 41)
    url = f"{server.base_url}/agents/h-0001"
    code, checks, output = _agent_check(url, "--token-file", str(token_file), fence_checks=False)
    assert code == 0, output
    assert checks["report.shape"][0] == "PASS" and checks["auth.wrong"][0] == "PASS"
    for name in ("fence.read", "init.run", "init.busy", "fence.raise", "fence.enforced"):
        assert checks[name] == ("SKIP", READ_ONLY), (name, checks[name])
    assert "agent-check changed the agent: nothing" in output
    assert fleet.highest_fence("h-0001") == 41 and fleet.calls.inits == []


def test_v2_simulator_passes_every_check(sim: tuple[Fleet, RunningSimulator], token_file: Path) -> None:
    fleet, server = sim
    fleet.raise_fence("h-0001", 41)
    url = f"{server.base_url}/agents/h-0001"
    code, checks, output = _agent_check(url, "--token-file", str(token_file), "--host-id", "h-0001")
    assert code == 0, output
    assert {v for v, _ in checks.values()} == {"PASS"}, output
    assert len(checks) == 21
    assert "fence 42 (the agent's highest was 41)" in output
    assert fleet.highest_fence("h-0001") == 43
    assert fleet.overlaps() == {}


def test_v1_simulator_passes_with_v2_checks_skipped(
    sim: tuple[Fleet, RunningSimulator], token_file: Path
) -> None:
    fleet, server = sim
    fleet.set_protocol(["h-0001"], 1)
    url = f"{server.base_url}/agents/h-0001"
    code, checks, output = _agent_check(url, "--token-file", str(token_file))
    assert code == 0, output
    assert checks["report.protocol"][1].startswith("no protocol field: a v1 agent")
    for name in ("init.busy", "init.status", "init.idempotent", "fence.raise", "fence.enforced"):
        assert checks[name][0] == "SKIP", name
    assert checks["init.run"][0] == checks["init.stale"][0] == "PASS"


def test_missing_token_fails_the_report_and_the_exit_code(sim: tuple[Fleet, RunningSimulator]) -> None:
    _, server = sim
    code, checks, output = _agent_check(f"{server.base_url}/agents/h-0002", "--no-init")
    assert code == 1, output
    assert checks["report.get"][0] == "FAIL" and "--token-file" in checks["report.get"][1]


def _broken_agent(defects: set[str]) -> FastAPI:
    """A v2-looking agent with the named defects: stale, busy, future, host_id, noauth."""
    app = FastAPI()
    state: dict[str, object] = {"highest": 0}
    records: dict[str, dict[str, object]] = {}

    def unauthorized(request: Request) -> JSONResponse | None:
        if "noauth" in defects or request.headers.get("authorization") == f"Bearer {TOKEN}":
            return None
        return JSONResponse({"error": "unauthorized"}, status_code=401)

    @app.get("/report")
    async def report(request: Request) -> object:
        now = datetime.now(UTC) + (timedelta(hours=1) if "future" in defects else timedelta(0))
        running = next((r for r in records.values() if r["status"] == "running"), None)
        keys = ("activation_id", "fence", "started_at")
        holder = None if running is None else {k: running[k] for k in keys}
        body = {
            "host_id": "h-other" if "host_id" in defects else "h-broken", "reported_at": format_time(now),
            "kvm": True, "version": "4.5.2", "cpu_flags": ["vmx"], "networks": {}, "storage_domains": {},
            "vms_running": 0, "mem_free_mb": 1000, "protocol": 2,
            "init": holder,
        }  # fmt: skip
        if "noagent" not in defects:
            body["agent"] = {"state_id": "state-1", "highest_fence": state["highest"]}
        return unauthorized(request) or body

    @app.post("/fence")
    async def fence(request: Request) -> object:
        asked = (await request.json())["fence"]
        if "fence0" not in defects and not 1 <= asked <= 2**63 - 1:
            return unauthorized(request) or JSONResponse({"detail": "fence out of bounds"}, status_code=422)
        state["highest"] = max(int(str(state["highest"])), asked)
        return unauthorized(request) or {"highest": state["highest"]}

    async def finish(act: str) -> None:
        await asyncio.sleep(0.4)
        records[act].update(status="done", ok=True, ended_at=format_time(datetime.now(UTC)))

    @app.post("/init")
    async def init(request: Request) -> object:
        refused = unauthorized(request)
        if refused:
            return refused
        body = await request.json()
        known = records.get(body["activation_id"])
        if known is not None and known["fence"] == body["fence"]:
            if known["status"] == "running":
                return JSONResponse({"status": "running"}, status_code=202)
            return {"ok": known["ok"]}
        highest = int(str(state["highest"]))
        if "stale" not in defects and body["fence"] < highest:
            return JSONResponse({"error": "stale_fence", "highest": highest}, status_code=409)
        running = [r for r in records.values() if r["status"] == "running"]
        if "busy" not in defects and running:
            holder = {k: running[0][k] for k in ("activation_id", "fence", "started_at")}
            return JSONResponse({"error": "busy", **holder}, status_code=409)
        state["highest"] = max(highest, body["fence"])
        act = body["activation_id"]
        records[act] = {
            "activation_id": act, "fence": body["fence"], "status": "running", "ok": None, "reason": None,
            "detail": None, "started_at": format_time(datetime.now(UTC)), "ended_at": None,
        }  # fmt: skip
        state[act] = asyncio.get_running_loop().create_task(finish(act))
        return JSONResponse({"status": "running"}, status_code=202)

    @app.get("/init/{act}")
    async def status(act: str, request: Request) -> object:
        if act not in records:
            return JSONResponse({"detail": "unknown"}, status_code=404)
        return unauthorized(request) or records[act]

    return app


@pytest.mark.parametrize(
    ("defects", "failing"),
    [
        ({"stale"}, {"init.stale", "fence.enforced"}),
        ({"busy"}, {"init.busy"}),
        ({"future"}, {"report.reported_at"}),
        ({"host_id"}, {"report.host_id"}),
        ({"noauth"}, {"auth.missing", "auth.wrong"}),
        # Takes fences 0 and 2^63 (Appendix B: 422), and then refuses every init below 2^63.
        ({"fence0"}, {"fence.bounds", "fence.enforced"}),
        # A v2 report without its agent state: the fallback read (/fence with 0) is refused too.
        ({"noagent"}, {"report.agent", "fence.read"}),
    ],
)
def test_a_broken_agent_fails_the_checks_it_breaks(
    defects: set[str], failing: set[str], token_file: Path
) -> None:
    running = start_app_in_thread(_broken_agent(defects))
    try:
        args = ("--token-file", str(token_file), "--host-id", "h-broken")
        code, checks, output = _agent_check(running.base_url, *args)
    finally:
        running.stop()
    assert code == 1, output
    assert {name for name, (verdict, _) in checks.items() if verdict == "FAIL"} == failing, output
