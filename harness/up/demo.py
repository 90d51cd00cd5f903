"""The run of ``autorecovery up``: servers, a fresh or kept database, children, the loop, the verdict."""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.live import Live

from autorecovery.bootstrap import Container, build, require_urls
from autorecovery.settings import Settings, load_settings
from harness.sim import SimulatorClient
from harness.sim.launcher import VmLauncher
from harness.sim.register import register_fleet
from harness.up.chaos import Chaos
from harness.up.operator import DemoOperator
from harness.up.preflight import UpOptions, free_port, require_free_port, validate
from harness.up.prepare import (
    Ports,
    api_token,
    broker_line,
    child_env,
    console,
    flower_auth,
    prepare_database,
    servers,
)
from harness.up.summary import classify, live_view, summarise, summary_lines
from harness.up.supervisor import Supervisor
from harness.up.verdict import verdict

VM_LAUNCH_EVERY_S = 1.0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def check_ports(opts: UpOptions, settings: Settings) -> Ports:
    """Refuse ports already taken (before anything starts); pick the simulator's if not given."""
    api = opts.api_port or settings.api_port
    require_free_port(settings.api_host, api, "--api-port")
    if opts.sim_port:
        require_free_port("127.0.0.1", opts.sim_port, "--sim-port")
    if opts.flower:
        require_free_port("127.0.0.1", opts.flower_port, "--flower-port")
    return Ports(api=api, sim=opts.sim_port or free_port(), flower=opts.flower_port if opts.flower else None)


def start_children(sup: Supervisor, opts: UpOptions, ports: Ports, data_dir: Path) -> None:
    """Start the worker, beat and the API (and Flower), and wait for the API to answer."""
    py = sys.executable
    queues = "monitoring,activation"
    name = f"up-{os.getpid()}@%h"
    celery = [py, "-m", "celery", "-A", "workers"]
    sup.start(
        "worker", [*celery, "worker", "-Q", queues, "-c", str(opts.concurrency), "-n", name, "-l", "INFO"]
    )
    sup.start("beat", [*celery, "beat", "-s", str(data_dir / "celerybeat-schedule"), "-l", "INFO"])
    sup.start("api", [py, "-m", "cli", "api"])
    sup.wait_http(f"http://127.0.0.1:{ports.api}/healthz", "the API", 30)
    console.print(f"API on http://127.0.0.1:{ports.api}/api/v1 (docs at /docs); logs in {sup.log_dir}")
    if ports.flower is not None:
        auth, where = flower_auth(data_dir)
        flower = [*celery, "flower", "--address=127.0.0.1", f"--port={ports.flower}"]
        # The password goes in the environment, never in the arguments (ps shows those).
        sup.start("flower", flower, {"FLOWER_BASIC_AUTH": auth})
        sup.wait_http(f"http://127.0.0.1:{ports.flower}/healthcheck", "Flower", 30)
        user = auth.split(":", 1)[0]
        source = f"password in {where}" if where else "FLOWER_BASIC_AUTH"
        console.print(f"Flower on http://127.0.0.1:{ports.flower} (user {user}, {source})")


def _register(container: Container, sim: SimulatorClient) -> None:
    added = register_fleet(container.fleet, sim.fleet(), actor="up", skip_existing=True)
    console.print(f"registered {added} simulated host(s)")


def _admin_api(api_port: int, tokens: str) -> httpx.Client:
    """An API client with the demo's admin token."""
    admins = [e.split(":", 2) for e in tokens.split(",") if e.count(":") >= 2]
    token = next((t for _, role, t in admins if role.strip() == "admin"), "")
    return httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}", timeout=10.0, headers={"Authorization": f"Bearer {token}"}
    )


def _launcher(api: httpx.Client, sim_port: int, sim: SimulatorClient, seed: int | None) -> VmLauncher:
    """A VM launcher placing VMs through the API's ranking, as the demo's admin."""
    # A silent host keeps a VM start open: 2 s and the next host is tried (the loop goes on).
    agents = httpx.Client(base_url=f"http://127.0.0.1:{sim_port}", timeout=2.0)
    clusters = [c["id"] for c in sim.fleet()["clusters"]]
    return VmLauncher(api, agents, clusters, random.Random(seed))  # noqa: S311 - not crypto


def _settle(container: Container, tick_s: float, settings: Settings) -> None:
    """With every fault cleared, give the fleet two ticks and an init to come back.

    Hosts held by safety stay down by design: only the others are waited for.
    """
    deadline = time.monotonic() + 2 * tick_s + settings.init_timeout_s + 5
    console.print("faults cleared; waiting for the fleet to come back …")
    while time.monotonic() < deadline:
        down = classify(container.views.plan())
        if not down["left_behind"] and not down["down_with_a_reason"]:
            return
        time.sleep(0.5)


@dataclass
class Loop:
    """The demo's loop: chaos, VM launches, the live view, until the deadline or Ctrl-C."""

    opts: UpOptions
    sup: Supervisor
    container: Container
    chaos: Chaos | None
    launcher: VmLauncher
    started: datetime
    operator: DemoOperator | None = None

    def run(self) -> None:
        """Run until ``duration_s`` is over (forever without one)."""
        deadline = None if self.opts.duration_s is None else time.monotonic() + self.opts.duration_s
        next_vm = last_line = 0.0
        with Live(console=console, refresh_per_second=2, transient=False, auto_refresh=False) as live:
            while deadline is None or time.monotonic() < deadline:
                self.sup.check()
                if self.chaos is not None:
                    self.chaos.step(time.monotonic())
                if self.operator is not None:
                    self.operator.step(time.monotonic())
                if time.monotonic() >= next_vm:
                    self._launch()
                    next_vm = time.monotonic() + VM_LAUNCH_EVERY_S
                if console.is_terminal:
                    live.update(live_view(self.container.db, self.chaos, self.started), refresh=True)
                elif time.monotonic() - last_line > 5:
                    counts = self.container.views.counts()["hosts_by_status"]
                    print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())), flush=True)
                    last_line = time.monotonic()
                time.sleep(0.5)

    def _launch(self) -> None:
        try:
            self.launcher.launch_one()
        except httpx.HTTPError as exc:
            console.print(f"[yellow]VM launcher: {exc}[/]")


def run_up(opts: UpOptions) -> int:
    """Run everything until Ctrl-C, SIGTERM or ``duration_s``; return the exit code."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    validate(opts)
    settings = load_settings()
    ports = check_ports(opts, settings)
    data_dir = (opts.data_dir or settings.data_dir).resolve()
    settings, embedded = servers(settings, data_dir)
    try:
        database_url, redis_url = require_urls(settings)
        prepare_database(opts, database_url, redis_url, embedded=embedded is not None)
        tokens, token_file = api_token(settings, data_dir)
        env = child_env(settings, tokens, ports)
        console.print(broker_line(env["AUTORECOVERY_BROKER_URL"]))
        if token_file:
            console.print(f"admin token in {token_file} (set AUTORECOVERY_API_TOKENS to choose yours)")
        sup = Supervisor(data_dir / "logs", env, console)
        return _run(opts, settings, sup, ports, data_dir, tick_s=float(env["AUTORECOVERY_TICK_INTERVAL_S"]))
    finally:
        if embedded is not None:
            embedded.stop()


def _run(
    opts: UpOptions, settings: Settings, sup: Supervisor, ports: Ports, data_dir: Path, *, tick_s: float
) -> int:
    container = build(settings)
    sim = SimulatorClient(f"http://127.0.0.1:{ports.sim}")
    started = datetime.now(UTC)
    chaos: Chaos | None = None
    operator: DemoOperator | None = None
    settled = False
    try:
        fleet = ["--hosts", str(opts.hosts), "--clusters", str(opts.clusters), "--port", str(ports.sim)]
        sup.start("simulator", [sys.executable, "-m", "cli", "sim", "serve", *fleet])
        sup.wait_http(f"http://127.0.0.1:{ports.sim}/healthz", "the simulator", 30)
        _register(container, sim)
        start_children(sup, opts, ports, data_dir)
        admin = _admin_api(ports.api, sup.env["AUTORECOVERY_API_TOKENS"])
        if opts.chaos:
            chaos = Chaos(sim, sim.fleet(), random.Random(opts.seed))  # noqa: S311 - not crypto
            if opts.clear_quarantine_after_s > 0:
                operator = DemoOperator(admin, opts.clear_quarantine_after_s, chaos.note)
                console.print(
                    f"the demo's admin clears a flapping host's quarantine after "
                    f"{opts.clear_quarantine_after_s:g}s (audited; --clear-quarantine-after 0: never)"
                )
        launcher = _launcher(admin, ports.sim, sim, opts.seed)
        Loop(opts, sup, container, chaos, launcher, started, operator).run()
        if chaos is not None:
            chaos.clear_all()
            _settle(container, tick_s, settings)
            settled = True
    except KeyboardInterrupt:
        pass
    finally:
        summary = _final_summary(container, sim, chaos, started)
        if summary is not None and operator is not None:
            summary["quarantines_cleared_by_the_demo_admin"] = operator.cleared
        console.print("stopping …")
        sup.stop()
        container.close()
        sim.close()
    return _report(summary, settled=settled, log_dir=sup.log_dir)


def _final_summary(
    container: Container, sim: SimulatorClient, chaos: Chaos | None, started: datetime
) -> dict[str, Any] | None:
    try:
        return summarise(container.db, container.views, sim, chaos, started)
    except Exception as exc:  # noqa: BLE001 - the summary must not hide the shutdown
        console.print(f"[yellow]no summary: {exc}[/]")
        return None


def _report(summary: dict[str, Any] | None, *, settled: bool, log_dir: Path) -> int:
    """Print a short summary, keep the whole one in ``log_dir``, and say which rules broke; 1 if one did."""
    if summary is None:
        return 0
    log_dir.mkdir(parents=True, exist_ok=True)
    full = log_dir / "summary.json"
    full.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
    for line in summary_lines(summary):
        console.print(line, markup=False, highlight=False)
    console.print(f"the whole summary, host by host: {full}")
    broken = verdict(summary, settled=settled)
    for rule in broken:
        console.print(f"[red]FAILED: {rule}[/]")
    if not broken:
        left = "no host left behind" if settled else "hosts left behind not judged (interrupted)"
        console.print(
            f"[green]OK: no overlapping init, no automatic init on a report that showed a problem, {left}[/]"
        )
    return 1 if broken else 0
