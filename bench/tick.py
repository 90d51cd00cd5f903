"""Benchmark a 10,000-host tick against the simulator and real services, beside the naive baseline.

    python -m bench.tick [--hosts 10000] [--batch-size 500] [--faults 100]

Uses AUTORECOVERY_DATABASE_URL / AUTORECOVERY_REDIS_URL when set, else the embedded servers.
Everything runs on this machine: the simulator and the workers are separate processes, and
worker time is their CPU time read from /proc. Prints a table and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tests.support.processes import Proc, spawn, start_worker, wait_for
from tests.support.servers import Servers, start_servers

console = Console()
RESULTS = Path(__file__).parent / "results"


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


def _statuses(deps: Any) -> dict[str, int]:
    with deps.db.transaction() as conn:
        rows = conn.execute("SELECT status, count(*) AS n FROM hosts GROUP BY status").fetchall()
    return {r["status"]: r["n"] for r in rows}


def _tick_through_worker(app_module: Any, deps: Any, worker: Proc) -> dict[str, Any]:
    from tests.integration.conftest import send_ticks

    cpu_before = cpu_seconds(worker)
    started = time.perf_counter()
    summary = send_ticks(app_module, deps, 1, timeout_s=300)[0]
    summary["end_to_end_s"] = time.perf_counter() - started
    summary["worker_cpu_s"] = cpu_seconds(worker) - cpu_before
    summary["statements_per_batch"] = summary["statements"] / max(summary["batches"], 1)
    return summary


def _push_all(deps: Any) -> None:
    """Store a fresh, clean pushed report for every host, as agents pushing to the API would."""
    from datetime import UTC, datetime

    from autorecovery.adapters.store import hosts as repo
    from models.domain import Report

    now = datetime.now(UTC)
    with deps.db.transaction() as conn:
        rows = conn.execute(
            "SELECT h.id, c.storage_domains, c.required_networks FROM hosts h "
            "JOIN clusters c ON c.id = h.cluster_id"
        ).fetchall()
    reports = [
        Report(host_id=r["id"], reported_at=now, kvm=True, version="4.5.2",
               cpu_flags=frozenset({"vmx", "sse4_2"}),
               networks={n: True for n in r["required_networks"]},
               storage_domains={sd: True for sd in r["storage_domains"]},
               vms_running=1, mem_free_mb=1000, source="push")
        for r in rows
    ]
    with deps.db.transaction() as conn:
        repo.upsert_reports(conn, reports, now)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; return its figures."""
    tmp = Path(tempfile.mkdtemp(prefix="ar-bench-"))
    servers: Servers = start_servers(tmp)
    env = servers.env(AUTORECOVERY_BATCH_SIZE=str(args.batch_size),
                      AUTORECOVERY_REPORT_MAX_AGE_S="120", AUTORECOVERY_TICK_INTERVAL_S="60",
                      AUTORECOVERY_AGENT_TIMEOUT_S="5", AUTORECOVERY_AGENT_CONCURRENCY="200")
    os.environ.update(env)
    import workers
    from bench import naive
    from harness.sim import SimulatorClient
    from harness.sim.register import register_fleet

    deps = workers.container()
    procs: list[Proc] = []
    results: dict[str, Any] = {"hosts": args.hosts, "batch_size": args.batch_size,
                               "faults": args.faults}
    try:
        port = 18900 + os.getpid() % 1000
        sim_proc = spawn([sys.executable, "-m", "autorecovery.cli", "sim", "serve", "--hosts",
                          str(args.hosts), "--clusters", "10", "--port", str(port)], env, tmp, "sim")
        procs.append(sim_proc)
        sim = SimulatorClient(f"http://127.0.0.1:{port}", timeout_s=60)

        def sim_up() -> bool:
            try:
                sim.healthz()
                return True
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_for(sim_up, 60, "the simulator")
        console.print(f"registering {args.hosts} simulated hosts …")
        fleet = sim.fleet()
        register_fleet(deps.fleet, fleet, actor="bench")
        host_ids = [h["id"] for h in fleet["hosts"]]
        with deps.db.transaction() as conn:  # steady state: the fleet is up
            conn.execute("UPDATE hosts SET status = 'up', reason = NULL, detail = NULL")

        console.print("our tick (batched, one task per tick) …")
        worker = start_worker(env, tmp, queues="monitoring", concurrency=1, name="bench-worker")
        procs.append(worker)
        ours: dict[str, Any] = {}
        _tick_through_worker(workers, deps, worker)  # warm-up: first reports and decisions
        ours["pull_steady"] = _tick_through_worker(workers, deps, worker)
        faulted = host_ids[:: max(1, args.hosts // max(args.faults, 1))][: args.faults]
        sim.inject("kvm_down", hosts=faulted)
        ours["pull_faults_appear"] = _tick_through_worker(workers, deps, worker)
        sim.clear()
        ours["pull_faults_clear"] = _tick_through_worker(workers, deps, worker)
        workers.app.control.purge()
        with deps.db.transaction() as conn:
            conn.execute("UPDATE activations SET state = 'skipped' WHERE state = 'queued'")
            conn.execute("UPDATE hosts SET status = 'up', reason = NULL, detail = NULL")
        _push_all(deps)
        _tick_through_worker(workers, deps, worker)  # warm-up after the reset above
        _push_all(deps)
        ours["push_steady"] = _tick_through_worker(workers, deps, worker)
        results["ours"] = ours

        console.print("naive baseline (one Celery task per host) …")
        with deps.db.transaction() as conn:
            conn.execute("DELETE FROM reports")
        procs.remove(worker)
        worker.stop()
        naive_proc = start_worker(env, tmp, queues="bench-naive", concurrency=2,
                                  name="naive-worker", app="bench.naive")
        procs.append(naive_proc)
        deps.redis.delete(naive.DONE_KEY, naive.STATEMENTS_KEY)
        cpu_before = cpu_seconds(naive_proc)
        started = time.perf_counter()
        for host_id in host_ids:
            naive.app.send_task(naive.NAIVE_TASK, args=[host_id], queue="bench-naive")
        sent_s = time.perf_counter() - started
        wait_for(lambda: int(deps.redis.get(naive.DONE_KEY) or 0) >= len(host_ids), 900,
                 "the naive tick", interval_s=0.5)
        wall = time.perf_counter() - started
        results["naive"] = {
            "duration_s": wall,
            "publish_s": sent_s,
            "worker_cpu_s": cpu_seconds(naive_proc) - cpu_before,
            "broker_messages": len(host_ids),
            "statements": int(deps.redis.get(naive.STATEMENTS_KEY) or 0),
        }
    finally:
        for proc in procs:
            proc.stop()
        deps.close()
        servers.close()
    return results


def report(results: dict[str, Any]) -> None:
    """Print the figures and the ratios against the baseline."""
    naive = results["naive"]
    table = Table(title=f"{results['hosts']}-host tick (batch {results['batch_size']})")
    for col in ("run", "wall s", "worker CPU s", "pull s", "SQL statements", "per batch",
                "broker msgs"):
        table.add_column(col, justify="right" if col != "run" else "left")
    for name, r in results["ours"].items():
        table.add_row(f"ours: {name}", f"{r['duration_s']:.2f}", f"{r['worker_cpu_s']:.2f}",
                      f"{r['pull_s']:.2f}", str(r["statements"]),
                      f"{r['statements_per_batch']:.1f}", str(r["enqueued"]))
    table.add_row("naive: one task per host", f"{naive['duration_s']:.2f}",
                  f"{naive['worker_cpu_s']:.2f}", "-", str(naive["statements"]),
                  f"{naive['statements'] / results['hosts']:.1f} per host",
                  str(naive["broker_messages"]))
    console.print(table)
    steady = results["ours"]["pull_steady"]
    console.print(
        f"ratios (naive / ours, pull, steady): wall {naive['duration_s'] / steady['duration_s']:.1f}x, "
        f"worker CPU {naive['worker_cpu_s'] / max(steady['worker_cpu_s'], 1e-9):.1f}x, "
        f"statements {naive['statements'] / max(steady['statements'], 1):.0f}x, "
        f"broker messages {naive['broker_messages']} vs {steady['enqueued']}"
    )


def main() -> None:
    """Parse arguments, run, print and save."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--faults", type=int, default=100, help="hosts faulted in the fault ticks")
    args = parser.parse_args()
    results = run(args)
    report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
