"""``autorecovery up``: the whole product on one machine, with a live view and a summary.

With no database or Redis URL set, embedded PostgreSQL and Redis run in the data directory.
Children (simulator, worker, beat, API) run as processes of their own and are stopped on
Ctrl-C or when ``--duration`` ends.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from api.auth import dev_token
from autorecovery.adapters.store import Database, migrate
from autorecovery.adapters.store.db import run
from autorecovery.settings import Settings, load_settings
from harness.sim import SimulatorClient
from harness.sim.launcher import VmLauncher
from models.errors import InvalidInput, PermanentError

console = Console()

STOP_TIMEOUT_S = 15.0
CHAOS_FAULTS = ("sd_down", "nic_down", "kvm_down", "silent", "init_delay", "shared_sd_down", "vm_fail")
#: Demo defaults (the operator's own settings win): a livelier loop than production's.
DEMO_SETTINGS = {
    "AUTORECOVERY_TICK_INTERVAL_S": "3",
    "AUTORECOVERY_ERROR_PERIOD_S": "45",
    "AUTORECOVERY_CHARGE_WINDOW_S": "300",
    "AUTORECOVERY_SD_INACTIVE_AFTER_S": "15",
}
VM_LAUNCH_EVERY_S = 1.0


@dataclass
class UpOptions:
    """What ``autorecovery up`` was asked for."""

    hosts: int = 12
    clusters: int = 2
    chaos: bool = False
    duration_s: float | None = None
    data_dir: Path | None = None
    concurrency: int = 2
    sim_port: int = 0
    api_port: int | None = None
    seed: int | None = None


@dataclass
class Child:
    """A supervised child process."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Supervisor:
    """Starts children in their own sessions and stops them all, gracefully first."""

    log_dir: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)

    def start(self, name: str, args: list[str]) -> Child:
        """Start one child with its output in ``log_dir/name.log``."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as out:
            popen = subprocess.Popen(
                args,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        child = Child(name, popen, log_path)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise when a child has died."""
        for child in self.children:
            code = child.popen.poll()
            if code is not None:
                raise PermanentError(f"{child.name} exited with code {code}; see {child.log_path}")

    def stop(self) -> None:
        """SIGTERM every child (workers finish their task), then SIGKILL what remains."""
        for child in reversed(self.children):
            if child.popen.poll() is None:
                child.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in reversed(self.children):
            try:
                child.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                console.print(f"[yellow]{child.name} did not stop in time; killing it[/]")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.popen.pid, signal.SIGKILL)
            child.popen.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _api_token(settings: Settings, data_dir: Path) -> tuple[str, str | None]:
    """Return the API tokens setting, creating an admin token file for the demo if none is set."""
    if settings.api_tokens:
        return settings.api_tokens, None
    token, path = dev_token(data_dir)
    return f"admin:admin:{token}", str(path)


def _wait_http(url: str, what: str, timeout_s: float, sup: Supervisor) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sup.check()
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise PermanentError(f"{what} did not answer at {url} within {timeout_s:.0f}s")


@dataclass
class Chaos:
    """Injects random faults and clears them after a while; counts what it did."""

    sim: SimulatorClient
    fleet: dict[str, Any]
    rng: random.Random
    injected: int = 0
    left_behind: list[str] = field(default_factory=list)
    pending: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    next_at: float = 0.0

    def step(self, now: float) -> None:
        """Clear what is due, then maybe inject a new fault."""
        for due, clear in [p for p in self.pending if p[0] <= now]:
            self.sim.clear(**clear)
            self.pending.remove((due, clear))
            self._event(f"cleared {clear.get('fault')} on {clear.get('hosts') or clear.get('cluster')}")
        if now < self.next_at:
            return
        self.next_at = now + self.rng.uniform(2.0, 6.0)
        busy = {h for _, c in self.pending for h in c.get("hosts") or []}
        hosts = [h for h in self.fleet["hosts"] if h["id"] not in busy]
        if not hosts:
            return
        host = self.rng.choice(hosts)
        cluster = next(c for c in self.fleet["clusters"] if c["id"] == host["cluster"])
        kind = self.rng.choice(CHAOS_FAULTS)
        hold_s = self.rng.uniform(4.0, 15.0)
        if kind == "shared_sd_down":
            members = [h["id"] for h in hosts if h["cluster"] == cluster["id"]]
            sd = self.rng.choice(cluster["storage_domains"])
            self.sim.inject("sd_down", hosts=members, target=sd)
            self.pending.append((now + hold_s, {"hosts": members, "fault": "sd_down", "target": sd}))
            self._event(f"storage domain {sd} lost by {len(members)} host(s) of {cluster['id']}")
        else:
            params: dict[str, Any] = {}
            if kind == "sd_down":
                params["target"] = self.rng.choice(cluster["storage_domains"])
            elif kind == "nic_down":
                params["target"] = self.rng.choice(cluster["required_networks"])
            elif kind == "init_delay":
                params["seconds"] = self.rng.uniform(1.0, 4.0)
                hold_s = max(hold_s, 20.0)
            self.sim.inject(kind, hosts=[host["id"]], **params)
            clear = {"hosts": [host["id"]], "fault": kind}
            if "target" in params:
                clear["target"] = params["target"]
            self.pending.append((now + hold_s, clear))
            self._event(f"{kind} on {host['id']} for {hold_s:.0f}s")
        self.injected += 1

    def clear_all(self) -> None:
        """Clear every pending fault."""
        self.sim.clear()
        self.pending.clear()

    def _event(self, text: str) -> None:
        self.events = [*self.events[-5:], f"{datetime.now(UTC):%H:%M:%S} {text}"]


def _view(db: Database, chaos: Chaos | None, started: datetime) -> Group:
    with db.transaction() as conn:
        counts = run(conn, "SELECT status, count(*) AS n FROM hosts GROUP BY status").fetchall()
        down = run(
            conn,
            """SELECT id, status, reason, last_decision FROM hosts
                           WHERE status <> 'up' ORDER BY id LIMIT 12""",
        ).fetchall()
        recent = run(
            conn,
            """SELECT host_id, trigger, outcome, reason, ended_at FROM activations
                             WHERE ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT 6""",
        ).fetchall()
    status = Table(title="hosts by status", show_edge=False)
    status.add_column("status")
    status.add_column("hosts", justify="right")
    for row in sorted(counts, key=lambda r: r["status"]):
        status.add_row(row["status"], str(row["n"]))
    out = Table(title="not up (why)", show_edge=False)
    for col in ("host", "status", "reason", "decision"):
        out.add_column(col)
    for row in down:
        out.add_row(row["id"], row["status"], row["reason"] or "", row["last_decision"] or "")
    acts = Table(title="recent activations", show_edge=False)
    for col in ("host", "trigger", "outcome", "reason", "ended"):
        acts.add_column(col)
    for row in recent:
        acts.add_row(
            row["host_id"],
            row["trigger"],
            row["outcome"] or "",
            row["reason"] or "",
            f"{row['ended_at']:%H:%M:%S}",
        )
    parts: list[Any] = [status, out, acts]
    if chaos is not None:
        parts.append("chaos: " + (" | ".join(chaos.events[-3:]) or "waiting"))
    elapsed = (datetime.now(UTC) - started).total_seconds()
    parts.append(f"running {elapsed:.0f}s; Ctrl-C stops everything")
    return Group(*parts)


def _summary(db: Database, sim: SimulatorClient, chaos: Chaos | None, started: datetime) -> dict[str, Any]:
    with db.transaction() as conn:
        acts = run(
            conn,
            """SELECT id, trigger, state FROM activations
                            WHERE queued_at >= %(t)s""",
            {"t": started},
        ).fetchall()
        counts = run(conn, "SELECT status, count(*) AS n FROM hosts GROUP BY status").fetchall()
    auto_ids = {a["id"] for a in acts if a["trigger"] == "auto"}
    inits = sim.inits()
    faulted_auto = [c for c in inits if c.get("faulted") and c["activation_id"] in auto_ids]
    left = [] if chaos is None else chaos.left_behind
    return {
        "hosts_left_behind": left,
        "faults_injected": chaos.injected if chaos else 0,
        "recoveries": sum(1 for a in acts if a["state"] == "succeeded"),
        "activations": len(acts),
        "auto_inits_on_hosts_with_a_problem": len(faulted_auto),
        "overlapping_inits": sim.overlaps()["count"],
        "hosts_by_status": {r["status"]: r["n"] for r in counts},
    }


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_up(opts: UpOptions) -> int:
    """Run everything until Ctrl-C, SIGTERM or ``duration_s``; return the exit code."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    for name, value in (
        ("--hosts", opts.hosts),
        ("--clusters", opts.clusters),
        ("--concurrency", opts.concurrency),
    ):
        if value < 1:
            raise InvalidInput(name, "must be at least 1")
    if opts.clusters > opts.hosts:
        raise InvalidInput("--clusters", "must not exceed --hosts")
    settings = load_settings()
    data_dir = (opts.data_dir or settings.data_dir).resolve()
    embedded = None
    database_url, redis_url = settings.database_url, settings.redis_url
    if not database_url or not redis_url:
        from harness.embedded import start_embedded

        console.print(f"starting embedded PostgreSQL and Redis in {data_dir} …")
        embedded = start_embedded(data_dir)
        database_url = database_url or embedded.database_url
        redis_url = redis_url or embedded.redis_url
    broker_url = settings.broker_url or redis_url
    applied = migrate(database_url)
    console.print(f"database ready ({len(applied)} migration(s) applied)")
    tokens, token_file = _api_token(settings, data_dir)
    api_port = opts.api_port or settings.api_port
    sim_port = opts.sim_port or _free_port()
    env = dict(os.environ)
    for variable, default in DEMO_SETTINGS.items():
        env.setdefault(variable, default)
    env.update(
        AUTORECOVERY_DATABASE_URL=database_url,
        AUTORECOVERY_REDIS_URL=redis_url,
        AUTORECOVERY_BROKER_URL=broker_url,
        AUTORECOVERY_API_TOKENS=tokens,
        AUTORECOVERY_API_PORT=str(api_port),
        AUTORECOVERY_API_URL=f"http://127.0.0.1:{api_port}",
    )
    sup = Supervisor(data_dir / "logs", env)
    db = Database(database_url, max_size=2)
    db.open()
    started = datetime.now(UTC)
    py = sys.executable
    sim = SimulatorClient(f"http://127.0.0.1:{sim_port}")
    chaos: Chaos | None = None
    code = 0
    try:
        sup.start(
            "simulator",
            [
                py,
                "-m",
                "autorecovery.cli",
                "sim",
                "serve",
                "--hosts",
                str(opts.hosts),
                "--clusters",
                str(opts.clusters),
                "--port",
                str(sim_port),
            ],
        )
        _wait_http(f"http://127.0.0.1:{sim_port}/healthz", "the simulator", 30, sup)
        _register(settings, database_url, sim)
        sup.start(
            "worker",
            [
                py,
                "-m",
                "celery",
                "-A",
                "workers",
                "worker",
                "-Q",
                "monitoring,activation",
                "-c",
                str(opts.concurrency),
                "-n",
                f"up-{os.getpid()}@%h",
                "-l",
                "INFO",
            ],
        )
        sup.start(
            "beat",
            [
                py,
                "-m",
                "celery",
                "-A",
                "workers",
                "beat",
                "-s",
                str(data_dir / "celerybeat-schedule"),
                "-l",
                "INFO",
            ],
        )
        sup.start("api", [py, "-m", "autorecovery.cli", "api"])
        _wait_http(f"http://127.0.0.1:{api_port}/healthz", "the API", 30, sup)
        console.print(f"API on http://127.0.0.1:{api_port}/api/v1 (docs at /docs); logs in {sup.log_dir}")
        if token_file:
            console.print(f"admin token in {token_file} (set AUTORECOVERY_API_TOKENS to choose yours)")
        if opts.chaos:
            chaos = Chaos(sim, sim.fleet(), random.Random(opts.seed))  # noqa: S311 - not crypto
        launcher = _launcher(api_port, tokens, sim_port, sim, opts.seed)
        code = _watch(opts, sup, db, chaos, started, launcher)
        if chaos is not None:
            chaos.clear_all()
            chaos = _settle(db, chaos, float(env["AUTORECOVERY_TICK_INTERVAL_S"]), settings)
    except KeyboardInterrupt:
        code = 0
    finally:
        summary = None
        try:
            summary = _summary(db, sim, chaos, started)
        except Exception as exc:  # noqa: BLE001 - the summary must not hide the shutdown
            console.print(f"[yellow]no summary: {exc}[/]")
        console.print("stopping …")
        sup.stop()
        db.close()
        sim.close()
        if embedded is not None:
            embedded.stop()
    if summary is not None:
        console.print_json(data=summary)
        if (
            summary["overlapping_inits"]
            or summary["auto_inits_on_hosts_with_a_problem"]
            or summary.get("hosts_left_behind")
        ):
            console.print("[red]a safety bar was broken: see the counts above[/]")
            code = code or 1
    return code


def _register(settings: Settings, database_url: str, sim: SimulatorClient) -> None:
    from autorecovery.services import utcnow
    from autorecovery.services.fleet import FleetService
    from harness.sim.register import register_fleet

    db = Database(database_url, max_size=2)
    db.open()
    try:

        def no_enqueue(activation_id: str, host_id: str, trigger: str, actor: str) -> None:
            raise PermanentError("registration does not activate")

        service = FleetService(db, no_enqueue, report_max_age_s=settings.report_max_age_s, clock=utcnow)
        added = register_fleet(service, sim.fleet(), actor="up", skip_existing=True)
        console.print(f"registered {added} simulated host(s)")
    finally:
        db.close()


def _settle(db: Database, chaos: Chaos, tick_s: float, settings: Settings) -> Chaos:
    """With every fault cleared, give the fleet two ticks and an init to come back; note who didn't."""
    deadline = time.monotonic() + 2 * tick_s + settings.init_timeout_s + 5
    console.print("faults cleared; waiting for the fleet to come back …")
    down: list[str] = []
    while time.monotonic() < deadline:
        with db.transaction() as conn:
            rows = run(conn, "SELECT id FROM hosts WHERE status <> 'up' ORDER BY id").fetchall()
        down = [r["id"] for r in rows]
        if not down:
            break
        time.sleep(0.5)
    chaos.left_behind = down
    return chaos


def _launcher(
    api_port: int, tokens: str, sim_port: int, sim: SimulatorClient, seed: int | None
) -> VmLauncher:
    """A VM launcher placing VMs through the API's ranking, as the demo's admin."""
    admins = [e.split(":", 2) for e in tokens.split(",") if e.count(":") >= 2]
    token = next((t for _, role, t in admins if role.strip() == "admin"), "")
    api = httpx.Client(
        base_url=f"http://127.0.0.1:{api_port}",
        timeout=10.0,
        headers={"Authorization": f"Bearer {token}"},
    )
    agents = httpx.Client(base_url=f"http://127.0.0.1:{sim_port}", timeout=10.0)
    clusters = [c["id"] for c in sim.fleet()["clusters"]]
    return VmLauncher(api, agents, clusters, random.Random(seed))  # noqa: S311 - not crypto


def _watch(
    opts: UpOptions,
    sup: Supervisor,
    db: Database,
    chaos: Chaos | None,
    started: datetime,
    launcher: VmLauncher,
) -> int:
    deadline = None if opts.duration_s is None else time.monotonic() + opts.duration_s
    last_line = next_vm = 0.0
    with Live(console=console, refresh_per_second=2, transient=False, auto_refresh=False) as live:
        while deadline is None or time.monotonic() < deadline:
            sup.check()
            if chaos is not None:
                chaos.step(time.monotonic())
            if time.monotonic() >= next_vm:
                try:
                    launcher.launch_one()
                except httpx.HTTPError as exc:
                    console.print(f"[yellow]VM launcher: {exc}[/]")
                next_vm = time.monotonic() + VM_LAUNCH_EVERY_S
            if console.is_terminal:
                live.update(_view(db, chaos, started), refresh=True)
            elif time.monotonic() - last_line > 5:
                with db.transaction() as conn:
                    rows = run(conn, "SELECT status, count(*) AS n FROM hosts GROUP BY status").fetchall()
                print(" ".join(f"{r['status']}={r['n']}" for r in rows), flush=True)
                last_line = time.monotonic()
            time.sleep(0.5)
    return 0
