"""What the benchmark sets up and measures with: the simulator, fleets, pushed reports, CPU time."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from autorecovery.adapters.store.db import affected
from tests.support.processes import Proc, spawn, wait_for

#: The clusters of the pushed-report fleet: what every host's clean report must satisfy.
PUSH_CLUSTERS = 10


def cpu_seconds(proc: Proc) -> float:
    """CPU time (user + system) of a process and its live children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in [proc.popen.pid, *proc.children()]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def start_simulator(env: dict[str, str], tmp: Path, hosts: int) -> tuple[Proc, Any]:
    """Start the simulator in its own process serving ``hosts`` agents; return it and a client."""
    from harness.sim import SimulatorClient

    port = 18900 + os.getpid() % 1000
    proc = spawn(
        [
            sys.executable,
            "-m",
            "cli",
            "sim",
            "serve",
            "--hosts",
            str(hosts),
            "--clusters",
            "10",
            "--port",
            str(port),
            "--host",
            "0.0.0.0",  # noqa: S104 - every agent at its own loopback address (``spread_over_loopback``)
        ],
        env,
        tmp,
        "sim",
    )
    client = SimulatorClient(f"http://127.0.0.1:{port}", timeout_s=60)

    def up() -> bool:
        try:
            client.healthz()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    wait_for(up, 60, "the simulator")
    return proc, client


def loopback_address(i: int) -> str:
    """The ``i``-th agent's own loopback address (127.0.0.0/8 holds 15 million with no .0 or .255)."""
    return f"127.{1 + i // 62_500}.{1 + i // 250 % 250}.{1 + i % 250}"


def spread_over_loopback(fleet: dict[str, Any]) -> dict[str, str]:
    """Point each agent of ``fleet`` at an address of its own, as a real fleet's are; return them by host.

    With one address and port for every agent, a client reuses a connection across agents, which
    no real fleet allows: the product and the limit client would each be measured on a few hundred
    connections instead of one per agent.
    """
    addresses: dict[str, str] = {}
    for i, host in enumerate(fleet["hosts"]):
        parts = urlsplit(host["agent_url"])
        addresses[host["id"]] = loopback_address(i)
        host["agent_url"] = parts._replace(netloc=f"{addresses[host['id']]}:{parts.port}").geturl()
    return addresses


def simulator_rate(env: dict[str, str], tmp: Path, agent_urls: list[str], loaders: int = 2) -> dict[str, Any]:
    """Reports per second the simulator serves to ``loaders`` load processes pulling at once."""
    urls_file = tmp / "agent-urls.txt"
    urls_file.write_text("\n".join(agent_urls))
    procs = [
        spawn(
            [sys.executable, "-m", "bench.simrate", str(urls_file), "--rounds", "2"], env, tmp, f"simrate{i}"
        )
        for i in range(loaders)
    ]
    for proc in procs:
        proc.popen.wait(600)
    answers = [json.loads(proc.log().strip().splitlines()[-1]) for proc in procs]
    served = sum(a["reports"] for a in answers)
    # From the first loader's start to the last one's end: their imports are not counted.
    wall = max(a["ended"] for a in answers) - min(a["started"] for a in answers)
    return {"reports": served, "seconds": wall, "reports_per_s": served / wall, "load_processes": loaders}


def add_push_fleet(db: Any, hosts: int) -> list[str]:
    """Register ``hosts`` hosts in PUSH_CLUSTERS clusters, all up; return their ids."""
    ids = [f"p-{i:06d}" for i in range(hosts)]
    with db.transaction() as conn:
        for c in range(1, PUSH_CLUSTERS + 1):
            conn.execute(
                "INSERT INTO clusters (id, required_networks, storage_domains, min_version, cpu_flags) "
                "VALUES (%s, '{mgmt}', %s, '4.0', '{vmx}')",
                (f"pc-{c}", [f"sd-pc-{c}"]),
            )
        conn.execute(
            "INSERT INTO hosts (id, cluster_id, agent_url, status, reason, detail) "
            "SELECT id, 'pc-' || (1 + n %% %(clusters)s), 'http://127.0.0.1:9/' || id, 'up', NULL, NULL "
            "FROM unnest(%(ids)s::text[]) WITH ORDINALITY AS t(id, n)",
            {"ids": ids, "clusters": PUSH_CLUSTERS},
        )
    return ids


def push_all(db: Any) -> None:
    """Store a fresh, clean pushed report for every host, as agents pushing to the API would."""
    from autorecovery.adapters.store import hosts as repo
    from models.domain import Report

    now = datetime.now(UTC)
    with db.transaction() as conn:
        rows = conn.execute(
            "SELECT h.id, c.storage_domains, c.required_networks FROM hosts h "
            "JOIN clusters c ON c.id = h.cluster_id"
        ).fetchall()
    reports = [
        Report(
            host_id=r["id"],
            reported_at=now,
            kvm=True,
            version="4.5.2",
            cpu_flags=frozenset({"vmx", "sse4_2"}),
            networks={n: True for n in r["required_networks"]},
            storage_domains={sd: True for sd in r["storage_domains"]},
            vms_running=1,
            mem_free_mb=1000,
            source="push",
        )
        for r in rows
    ]
    with db.transaction() as conn:
        repo.upsert_reports(conn, reports, now)


def tick_through(app_module: Any, deps: Any, worker: Proc) -> dict[str, Any]:
    """Run one tick through the worker pool; its summary plus wall time and the pool's CPU time.

    The previous tick is forgotten first: back-to-back ticks here would otherwise be duplicates
    of each other (one tick per interval).
    """
    from tests.integration.conftest import send_ticks

    with deps.db.transaction() as conn:
        conn.execute("DELETE FROM ticks")
    cpu_before = cpu_seconds(worker)
    started = time.perf_counter()
    summary = send_ticks(app_module, deps, 1, timeout_s=600)[0]
    summary["wall_s"] = time.perf_counter() - started
    summary["worker_cpu_s"] = cpu_seconds(worker) - cpu_before
    summary["statements_per_batch"] = summary["statements"] / max(summary["batches"], 1)
    return summary


def median_tick(app_module: Any, deps: Any, worker: Proc, runs: int = 3) -> dict[str, Any]:
    """The run with the median wall time of ``runs`` ticks, after one warm-up tick."""
    tick_through(app_module, deps, worker)
    ticks = sorted((tick_through(app_module, deps, worker) for _ in range(runs)), key=lambda s: s["wall_s"])
    chosen = ticks[len(ticks) // 2]
    chosen["wall_s_all"] = [round(t["wall_s"], 3) for t in ticks]
    # The median CPU, as the limit client's: on a shared machine a tick's CPU varies apart from its wall.
    chosen["worker_cpu_s_all"] = [round(t["worker_cpu_s"], 3) for t in ticks]
    chosen["worker_cpu_s"] = statistics.median(t["worker_cpu_s"] for t in ticks)
    chosen["wall_s_spread"] = statistics.pstdev([t["wall_s"] for t in ticks])
    return chosen


def limit_client(env: dict[str, str], tmp: Path, agent_urls: list[str], batch_size: int) -> dict[str, Any]:
    """CPU and wall of the limit client (``bench.limit``) over the same agents, median of 3 rounds."""
    urls_file = tmp / "agent-urls.txt"
    urls_file.write_text("\n".join(agent_urls))
    proc = spawn(
        [
            sys.executable,
            "-m",
            "bench.limit",
            str(urls_file),
            "--rounds",
            "4",
            "--batch-size",
            str(batch_size),
        ],
        env,
        tmp,
        "limit",
    )
    proc.popen.wait(600)
    answer = json.loads(proc.log().strip().splitlines()[-1])
    cpu = sorted(answer["cpu_s"][1:])  # the first round opens the connections
    wall = sorted(answer["wall_s"][1:])
    return {"reports": answer["reports"], "cpu_s": cpu[len(cpu) // 2], "wall_s": wall[len(wall) // 2]}


def sql_floor(db: Any) -> dict[str, Any]:
    """What PostgreSQL itself takes to write every stored report's time (``UPDATE … FROM unnest``)."""
    now = datetime.now(UTC)
    with db.transaction() as conn:
        ids = [r["host_id"] for r in conn.execute("SELECT host_id FROM reports ORDER BY host_id").fetchall()]
    best = None
    for _ in range(3):
        with db.transaction() as conn:
            started = time.perf_counter()
            cur = conn.execute(
                "UPDATE reports r SET reported_at = v.at FROM unnest(%(ids)s::text[], %(ats)s::timestamptz[])"
                " AS v(id, at) WHERE r.host_id = v.id",
                {"ids": ids, "ats": [now] * len(ids)},
            )
            # A transaction is pipelined: the statement has run only once its result is read.
            assert affected(cur) == len(ids)
            took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    assert best is not None
    return {"rows": len(ids), "wall_s": best, "us_per_row": 1e6 * best / max(len(ids), 1)}


def batch_round_trips(deps: Any) -> dict[str, Any]:
    """Round trips to PostgreSQL of one batch of a steady pushed fleet, counted on the wire."""
    from dataclasses import replace

    from autorecovery.adapters.store import Database
    from autorecovery.bootstrap import build_services
    from bench.roundtrips import RoundTrips

    trips = RoundTrips()
    db = Database(deps.db.conninfo, max_size=2, configure=trips.configure)
    db.open(wait_s=10.0)
    specs: list[Any] = []
    try:
        with deps.db.transaction() as conn:
            conn.execute("DELETE FROM ticks")
        monitoring = build_services(
            deps.settings, replace(deps.adapters, db=db), send_batch=specs.append
        ).monitoring
        monitoring.tick()
        found, sizes = [], []
        for spec in specs[:3]:
            with deps.db.transaction() as conn:
                sizes.append(
                    conn.execute(
                        "SELECT count(*) AS n FROM hosts WHERE id >= %s AND (%s::text IS NULL OR id < %s)",
                        (spec.lo, spec.hi, spec.hi),
                    ).fetchone()["n"]
                )
            trips.take()
            monitoring.run_batch(spec)
            found.append(trips.take())
        with deps.db.transaction() as conn:
            conn.execute("DELETE FROM ticks")
    finally:
        db.close()
    # The hosts of the batches measured: pushed hosts share bigger batches than pulled ones.
    return {"per_batch": found, "batch_size": max(sizes, default=0), "hosts_per_batch": sizes}
