"""Benchmark the fanned-out tick against the simulator and real services, beside the naive baseline.

    python -m bench.tick [--hosts 10000] [--push-hosts 100000] [--batch-size 500] [--faults 100]
    python -m bench.tick --only limit,pull1,named    # some sections: bench/results/only.json

Uses AUTORECOVERY_DATABASE_URL / AUTORECOVERY_REDIS_URL when set, else the embedded servers.
Everything runs on this machine: the simulator, its load generators and the workers are separate
processes, and worker time is their CPU time read from /proc. Measured in one run:
- the simulator's own serving rate (two load processes pulling every agent, no database);
- a pulling tick over ``--hosts`` hosts with 1, 2 and 4 worker processes (median of 3 ticks);
- faults appearing and clearing (2 worker processes);
- the naive baseline: one Celery task per host (2 worker processes);
- the limit client: bare aiohttp + msgspec fetching and decoding the same reports (1 process);
- a pulling tick with agents named by DNS names beside the same by IP (1 worker process);
- a tick over ``--push-hosts`` hosts whose reports were pushed, with 1 and 2 worker processes,
  beside PostgreSQL's own floor for the same rows (``UPDATE … FROM unnest``);
- the round trips of one 500-host batch, counted on the wire;
- single and bulk pushes through the API (API CPU from /proc).
Prints a table, writes bench/results/latest.json and rewrites the README's figures from it.

``--only`` runs some of the sections (SECTIONS; ``pull1`` is the pulling tick on 1 process
alone) for a quick iteration: it prints the ratios it has and writes bench/results/only.json,
never latest.json or the README.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import readme
from bench.api import api_push_rates
from bench.fleet import (
    add_push_fleet,
    batch_round_trips,
    cpu_seconds,
    limit_client,
    median_tick,
    push_all,
    simulator_rate,
    spread_over_loopback,
    sql_floor,
    start_simulator,
    tick_through,
)
from tests.support.processes import Proc, start_worker, wait_for
from tests.support.servers import Servers, start_servers

console = Console()
RESULTS = Path(__file__).parent / "results"
#: What ``--only`` may name, in the order a full run takes them.
SECTIONS = ("sim", "limit", "pull", "pull1", "faults", "named", "naive", "push", "api")


def _pulling(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, deps: Any, workers: Any
) -> dict[str, Any]:
    from harness.sim.register import register_fleet

    only = args.only
    sim_proc, sim = start_simulator(env, tmp, args.hosts)
    try:
        fleet = sim.fleet()
        shared = [h["agent_url"] for h in fleet["hosts"]]  # every agent at 127.0.0.1
        addresses = spread_over_loopback(fleet)
        urls = [h["agent_url"] for h in fleet["hosts"]]
        out: dict[str, Any] = {"agent_addresses": "own"}
        if "sim" in only:
            # Two load processes with a connection per agent each would pass the simulator's
            # open-file limit: they share one address (its serving rate is what is measured).
            console.print(f"the simulator's own serving rate ({args.hosts} agents, 2 load processes) …")
            out["sim_rate"] = simulator_rate(env, tmp, shared)
        if "limit" in only:
            console.print("the limit client (bare aiohttp + msgspec, same reports, 1 process) …")
            out["limit"] = limit_client(env, tmp, urls, args.batch_size)
        if not only & {"pull", "pull1", "faults", "named", "naive"}:
            return out
        console.print(f"registering {args.hosts} simulated hosts, each agent at its own address …")
        register_fleet(deps.fleet, fleet, actor="bench")
        with deps.db.transaction() as conn:  # steady state: the fleet is up
            conn.execute("UPDATE hosts SET status = 'up', reason = NULL, detail = NULL")
        pools = _pools(only)
        out["pull"] = {}
        if 1 in pools:
            out["pull"]["1"] = _pull_tick(env, tmp, deps, workers, 1)
        if "named" in only:
            console.print("agents named by DNS names beside agents named by IP (1 worker process) …")
            out["named"] = _named(env, tmp, deps, workers, addresses, urls)
        if any(n > 1 for n in pools) or "naive" in only:
            # A connection per agent per worker process would pass the simulator's open-file
            # limit (one process serves every agent): more processes share one address.
            _point_agents(deps, list(addresses), shared)
            out["agent_addresses_shared_from"] = 2
        out.update(_shared_address_sections(args, env, tmp, deps, workers, sim, fleet, pools, out["pull"]))
    finally:
        sim_proc.stop()
    return out


def _shared_address_sections(
    args: argparse.Namespace,
    env: dict[str, str],
    tmp: Path,
    deps: Any,
    workers: Any,
    sim: Any,
    fleet: dict[str, Any],
    pools: tuple[int, ...],
    pulls: dict[str, Any],
) -> dict[str, Any]:
    """The pulling ticks on 2+ processes (the faults on 2) into ``pulls``, and the naive baseline.

    Run while the simulator serves: the naive tasks pull the same agents the tick does.
    """
    out: dict[str, Any] = {}

    def faults(worker: Proc) -> None:
        if "faults" in args.only:
            out["faults"] = _faults(args, sim, fleet, workers, deps, worker)

    for processes in (n for n in pools if n > 1):
        then = faults if processes == 2 else None
        pulls[str(processes)] = _pull_tick(env, tmp, deps, workers, processes, then)
    if "naive" in args.only:
        console.print("naive baseline (one Celery task per host, 2 worker processes) …")
        out["naive"] = _naive(env, tmp, deps)
    return out


def _pools(only: frozenset[str]) -> tuple[int, ...]:
    """The worker pools whose pulling tick the sections need (the faults run on 2 processes)."""
    pools = (1, 2, 4) if "pull" in only else (1,) if "pull1" in only else ()
    return (*pools, 2) if "faults" in only and 2 not in pools else pools


def _pull_tick(
    env: dict[str, str], tmp: Path, deps: Any, workers: Any, processes: int, then: Any = None
) -> dict[str, Any]:
    """The median pulling tick with ``processes`` worker processes; ``then(worker)`` runs after it."""
    console.print(f"pulling tick, {processes} worker process(es) …")
    worker = start_worker(env, tmp, queues="monitoring", concurrency=processes, name=f"pool{processes}")
    try:
        found = median_tick(workers, deps, worker)
        if then is not None:
            then(worker)
        return found
    finally:
        worker.stop()


_POINT = (
    "UPDATE hosts h SET agent_url = v.url FROM unnest(%(ids)s::text[], %(urls)s::text[]) AS v(id, url) "
    "WHERE h.id = v.id"
)


def _point_agents(deps: Any, ids: list[str], urls: list[str]) -> None:
    """Register ``urls[i]`` as the agent URL of host ``ids[i]``."""
    with deps.db.transaction() as conn:
        conn.execute(_POINT, {"ids": ids, "urls": urls})


def _named(
    env: dict[str, str], tmp: Path, deps: Any, workers: Any, addresses: dict[str, str], urls: list[str]
) -> dict[str, Any]:
    """A pulling tick with every agent named by its own DNS name, beside the same by IP, back to back.

    Each name resolves to its agent's own address, as each IP case's URL has it.
    """
    from bench.named import ADDRESSES_ENV, SUFFIX

    names = tmp / "named-addresses.json"
    names.write_text(json.dumps(addresses))
    found: dict[str, Any] = {}
    for kind, app in (("ip", "workers"), ("named", "bench.named")):
        if kind == "named":
            with deps.db.transaction() as conn:  # http://127.0.1.2:port/agents/h-1 -> http://h-1.agents…
                conn.execute(
                    "UPDATE hosts SET agent_url = regexp_replace(agent_url, '^http://[^:/]+', "
                    "'http://' || id || %(suffix)s)",
                    {"suffix": SUFFIX},
                )
        worker = start_worker(
            {**env, ADDRESSES_ENV: str(names)},
            tmp,
            queues="monitoring",
            concurrency=1,
            name=f"{kind}1",
            app=app,
        )
        try:
            found[kind] = median_tick(workers, deps, worker)
        finally:
            worker.stop()
    _point_agents(deps, list(addresses), urls)
    return found


def _faults(
    args: argparse.Namespace, sim: Any, fleet: dict[str, Any], workers: Any, deps: Any, worker: Proc
) -> dict[str, Any]:
    host_ids = [h["id"] for h in fleet["hosts"]]
    faulted = host_ids[:: max(1, args.hosts // max(args.faults, 1))][: args.faults]
    sim.inject("kvm_down", hosts=faulted)
    appear = tick_through(workers, deps, worker)
    sim.clear()
    clear = tick_through(workers, deps, worker)
    workers.app.control.purge()
    with deps.db.transaction() as conn:
        conn.execute("UPDATE activations SET state = 'skipped' WHERE state = 'queued'")
        conn.execute("UPDATE hosts SET status = 'up', reason = NULL, detail = NULL")
    return {"appear": appear, "clear": clear}


def _naive(env: dict[str, str], tmp: Path, deps: Any) -> dict[str, Any]:
    from bench import naive

    with deps.db.transaction() as conn:
        conn.execute("DELETE FROM reports")
        host_ids = [r["id"] for r in conn.execute("SELECT id FROM hosts ORDER BY id").fetchall()]
    proc = start_worker(env, tmp, queues="bench-naive", concurrency=2, name="naive-worker", app="bench.naive")
    try:
        deps.redis.delete(naive.DONE_KEY, naive.STATEMENTS_KEY, naive.ANSWERED_KEY)
        cpu_before = cpu_seconds(proc)
        started = time.perf_counter()
        for host_id in host_ids:
            naive.app.send_task(naive.NAIVE_TASK, args=[host_id], queue="bench-naive")
        wait_for(
            lambda: int(deps.redis.get(naive.DONE_KEY) or 0) >= len(host_ids),
            900,
            "the naive tick",
            interval_s=0.5,
        )
        return {
            "wall_s": time.perf_counter() - started,
            "worker_cpu_s": cpu_seconds(proc) - cpu_before,
            "broker_messages": len(host_ids),
            "statements": int(deps.redis.get(naive.STATEMENTS_KEY) or 0),
            # Pulls the agents answered: a baseline against agents that are gone measures nothing.
            "answered": int(deps.redis.get(naive.ANSWERED_KEY) or 0),
        }
    finally:
        proc.stop()


def _pushed(
    args: argparse.Namespace, env: dict[str, str], tmp: Path, deps: Any, workers: Any
) -> dict[str, Any]:
    with deps.db.transaction() as conn:
        conn.execute("TRUNCATE hosts, clusters, reports, activations, ticks CASCADE")
    console.print(f"registering {args.push_hosts} hosts that push their reports …")
    add_push_fleet(deps.db, args.push_hosts)
    out: dict[str, Any] = {"hosts": args.push_hosts, "batch_size": deps.settings.pushed_batch_size}
    for processes in (1, 2):
        console.print(f"pushed-report tick, {processes} worker process(es) …")
        worker = start_worker(env, tmp, queues="monitoring", concurrency=processes, name=f"push{processes}")
        try:
            push_all(deps.db)
            out[str(processes)] = median_tick(workers, deps, worker)
        finally:
            worker.stop()
    console.print("PostgreSQL's own floor for the same rows (UPDATE … FROM unnest) …")
    out["floor"] = sql_floor(deps.db)
    console.print("round trips of one 500-host batch, counted on the wire …")
    push_all(deps.db)
    out["round_trips"] = batch_round_trips(deps)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark; return its figures."""
    tmp = Path(tempfile.mkdtemp(prefix="ar-bench-"))
    servers: Servers = start_servers(tmp)
    env = servers.env(
        AUTORECOVERY_BATCH_SIZE=str(args.batch_size),
        AUTORECOVERY_REPORT_MAX_AGE_S="600",
        AUTORECOVERY_TICK_INTERVAL_S="120",
        # Above the tick interval and an init poll, as the settings require.
        AUTORECOVERY_SD_INACTIVE_AFTER_S="300",
        AUTORECOVERY_AGENT_TIMEOUT_S="10",
        AUTORECOVERY_AGENT_CONCURRENCY="200",
        AUTORECOVERY_CLUSTER_CAP="100%",
        AUTORECOVERY_FLEET_CAP="100000",
        AUTORECOVERY_OBSERVER_QUIET_PERIOD="false",
    )
    os.environ.update(env)
    import workers

    deps = workers.container()
    results: dict[str, Any] = {
        "hosts": args.hosts,
        "batch_size": args.batch_size,
        "faults": args.faults,
        "cores": os.cpu_count(),
        "command": "python -m bench.tick" + (f" --only {args.only_arg}" if args.only_arg else ""),
        "load": {"start": os.getloadavg()[0]},
    }
    only = args.only
    try:
        results.update(_pulling(args, env, tmp, deps, workers))
        if "push" in only:
            results["push"] = _pushed(args, env, tmp, deps, workers)
        if "api" in only:
            console.print("API pushes: single reports and bulk, API CPU from /proc …")
            results["api"] = api_push_rates(env, tmp, deps.db)
        results["load"]["end"] = os.getloadavg()[0]
    finally:
        deps.close()
        servers.close()
    return results


def main() -> None:
    """Parse arguments, run, print, save the JSON and rewrite the README's figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--push-hosts", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--faults", type=int, default=100, help="hosts faulted in the fault ticks")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README's figures")
    parser.add_argument(
        "--only",
        dest="only_arg",
        default="",
        metavar="SECTIONS",
        help=f"comma-separated sections to run ({', '.join(SECTIONS)}); writes only.json",
    )
    args = parser.parse_args()
    args.only = parse_only(args.only_arg)
    results = run(args)
    RESULTS.mkdir(exist_ok=True)
    if args.only_arg:
        console.print(readme.render_partial(results))
        (RESULTS / "only.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        console.print("bench/results/only.json written (latest.json and the README left alone)")
        return
    console.print(readme.render(results))
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    if not args.no_readme:
        readme.rewrite(results)
        console.print("README.md: figures rewritten from bench/results/latest.json")


def parse_only(text: str) -> frozenset[str]:
    """The sections ``--only`` names (every section when empty).

    Raises:
        SystemExit: a name that is not a section.
    """
    if not text.strip():
        return frozenset(SECTIONS)
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(SECTIONS))
    if unknown:
        raise SystemExit(f"--only: no section {', '.join(unknown)} (sections: {', '.join(SECTIONS)})")
    return names


if __name__ == "__main__":
    main()
