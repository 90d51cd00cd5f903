"""Benchmark 1,000 simultaneous recoveries on 2 worker processes, then again with hung agents.

    python -m bench.recoveries [--hosts 1000] [--hung-share 0.1] [--max-wait-s 180]

A simulated fleet (the simulator over HTTP), PostgreSQL and Redis (AUTORECOVERY_DATABASE_URL /
AUTORECOVERY_REDIS_URL when set, else embedded), two real Celery workers as deploy/ runs them, 2
processes in all: an activation pool on the ``activation`` queue (``--activation-processes``,
default 1) and a monitoring pool on the ``monitoring`` queue (``--monitor-processes``, default 1),
and beat's short-period entries sent by this process at their intervals (as beat would; ticks
every 2 s). Caps are raised so that one tick may queue every host.
Each scenario takes every host out (``kvm_down``), clears the fault at once, and watches the store
until the hosts are up. Measured from outside only (no product internals), so it keeps working
when the activation's tasks or the re-send rule change:

- time from the fault cleared to all up, and hosts up per second;
- where the time goes, from the store's activation records: how long after the fault cleared a
  host's activation was admitted, how long it waited in the queue, how long from its send step's
  start to its close;
- worker slots busy: each pool's share of its processes' time in its tasks (the worker's log;
  Celery task events for the activation tasks: a task is an activation's when its kwargs name an
  ``activation_id``), and the CPU share read from /proc;
- duplicate runs (a task message run again beyond its own retries, from the events; an
  activation whose init ran twice, from the simulator's record) and re-sends (the store's count
  of sends, and messages delivered twice);
- the same with ``--hung-share`` of the agents hung (``init_hang``: their init never ends):
  the time the others take, against the time the same hosts took in the baseline of this run.

Prints the figures, writes bench/results/recoveries.json and the README's recovery block.

``--activation-threads N`` runs the activation pool's process with N threads (``-P threads``,
deploy/README.md's option) instead of the shipped prefork pool: still 2 processes, the figures
go to bench/results/recoveries-threads.json, and the README is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import readme
from bench import recovery_stats as stats
from bench.fleet import cpu_seconds, start_simulator
from bench.recoveries_readme import render_recoveries
from bench.recovery_watch import (
    EventLog,
    Ticker,
    TickLog,
    clients_on,
    queued_messages,
    store_activations,
    store_phases,
    store_resends,
)
from tests.support.processes import Proc, start_worker, wait_for
from tests.support.servers import TEST_SETTINGS, Servers, start_servers

console = Console()
RESULTS = Path(__file__).parent / "results" / "recoveries.json"
RESULTS_THREADS = RESULTS.with_name("recoveries-threads.json")
COMMAND = "python -m bench.recoveries"
#: Processes of the activation pool and of the monitoring pool (2 in all, as the issue asks).
ACTIVATION_PROCESSES = 1
MONITOR_PROCESSES = 1
POLL_S = 0.2
#: Seconds the queues must stay empty, with no task in flight, before a scenario is over.
QUIET_S = 3.0
#: The longest wait for that, after the hosts are up (a hung agent's steps may never end).
DRAIN_MAX_S = 30.0


def settings(tick_interval_s: float, hosts: int) -> dict[str, str]:
    """The product's settings for this bench, in the order the settings validator wants.

    Short calls and limits, as in the tests, so that a hung init costs seconds; everything else
    (when a queued activation expires or is re-sent, retries) at the product's defaults.
    """
    return {
        "AUTORECOVERY_TICK_INTERVAL_S": f"{tick_interval_s:g}",
        "AUTORECOVERY_REPORT_MAX_AGE_S": f"{5 * tick_interval_s:g}",
        "AUTORECOVERY_AGENT_TIMEOUT_S": "2",
        "AUTORECOVERY_INIT_TIMEOUT_S": "3",
        "AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S": "5",
        "AUTORECOVERY_ACTIVATION_TIME_LIMIT_S": "6",
        "AUTORECOVERY_LOCK_TTL_S": "8",
        "AUTORECOVERY_CLUSTER_CAP": "100%",
        "AUTORECOVERY_FLEET_CAP": str(max(hosts, 1000)),
        "AUTORECOVERY_OBSERVER_QUIET_PERIOD": "false",
    }


def without_test_settings(env: dict[str, str], chosen: dict[str, str]) -> dict[str, str]:
    """``env`` without the test suite's settings that the bench did not choose: the product's defaults."""
    return {k: v for k, v in env.items() if k in chosen or k not in TEST_SETTINGS}


class Bench:
    """One run: the servers, the simulator, the two pools, the ticker and the event log."""

    def __init__(
        self, args: argparse.Namespace, sim: Any, deps: Any, app: Any, pools: dict[str, Proc]
    ) -> None:
        self.args, self.sim, self.deps, self.app, self.pools = args, sim, deps, app, pools
        self.processes = {"activation": args.activation_processes, "monitoring": args.monitor_processes}
        self.host_ids: list[str] = [h["id"] for h in sim.fleet()["hosts"]]
        self.events = EventLog(app)
        self.ticks = TickLog(deps.redis)

    def statuses(self) -> dict[str, str]:
        """Every host's status in the store."""
        with self.deps.db.transaction() as conn:
            rows = conn.execute("SELECT id, status FROM hosts").fetchall()
        return {r["id"]: r["status"] for r in rows}

    def wait_all(self, status: str, what: str, timeout_s: float = 180) -> None:
        """Wait until every host has ``status`` in the store."""
        wait_for(lambda: set(self.statuses().values()) == {status}, timeout_s, what, interval_s=0.5)

    def scenario(self, name: str, hung: list[str]) -> dict[str, Any]:
        """Take every host out, clear the fault at once, and measure the recovery."""
        console.print(f"[{name}] waiting for the fleet to be up …")
        self.wait_all("up", "every host up before the scenario")
        self.sim.inject("kvm_down", all_hosts=True)
        console.print(f"[{name}] {len(self.host_ids)} hosts out (kvm_down) …")
        self.wait_all("non_operational", "every host out")
        if hung:
            self.sim.inject("init_hang", hosts=hung)
        resends_before, resend_source = store_resends(self.deps.db)
        self.sim.reset_record()
        mark = self.events.mark()
        cpu_before = self._cpu_by_pool()
        cleared_at = time.time()
        self.sim.clear(fault="kvm_down")
        console.print(f"[{name}] fault cleared; watching {len(self.host_ids) - len(hung)} hosts come up …")
        watched = [h for h in self.host_ids if h not in set(hung)]
        first_up = self._watch(watched, cleared_at)
        ended_at = max((first_up[h] for h in watched if h in first_up), default=time.time())
        cpu_by_pool = {pool: cpu - cpu_before[pool] for pool, cpu in self._cpu_by_pool().items()}
        cpu_s = sum(cpu_by_pool.values())
        pool_busy = {
            pool: stats.busy_by_name(
                stats.logged_runs(proc.log()), self.processes[pool], cleared_at, ended_at
            )
            for pool, proc in self.pools.items()
        }
        by_task = {name: share for shares in pool_busy.values() for name, share in shares.items()}
        self.ticks.gather()
        ticks = stats.tick_figures(self.ticks.summaries(), cleared_at, ended_at)
        self._drain(hung)
        events = self.events.since(mark)
        inits = self.sim.inits()
        resends_after, _ = store_resends(self.deps.db)
        if hung:
            self.sim.clear(fault="init_hang")
        tasks = stats.task_figures(events)
        found = stats.recovery(first_up, watched, cleared_at)
        init = stats.init_figures(inits)
        return {
            "hosts": len(self.host_ids),
            "hung": len(hung),
            "first_up": {h: round(t - cleared_at, 3) for h, t in first_up.items()},
            "watched": watched,
            "recovery": _asdict(found),
            "per_s": found.per_s,
            "window_s": ended_at - cleared_at,
            # Shares of the activation pool's processes (events), then of each pool's (its log,
            # which also shows the tasks that send no events: the tick's).
            "busy_share": tasks.busy_share(self.processes["activation"], cleared_at, ended_at),
            "busy_by_task": by_task,
            "busy_by_pool": {pool: sum(shares.values()) for pool, shares in pool_busy.items()},
            "busy_log_share": sum(pool_busy["activation"].values()),
            "busy_other_share": sum(pool_busy["monitoring"].values()),
            "cpu_share": cpu_s / (sum(self.processes.values()) * max(ended_at - cleared_at, 1e-9)),
            # CPU seconds of each pool (its processes and the worker's parent) until all were up.
            "cpu_by_pool_s": cpu_by_pool,
            "activation_cpu_ms": 1000 * cpu_by_pool["activation"] / max(tasks.activations, 1),
            "phases": store_phases(self.deps.db, cleared_at),
            "tasks": {
                "messages": tasks.messages,
                "activations": tasks.activations,
                "runs": tasks.runs,
                "duplicate_runs": tasks.duplicate_runs,
                "extra_deliveries": tasks.extra_deliveries,
                "run_ms_median": tasks.run_ms(0.5),
                "run_ms_p95": tasks.run_ms(0.95),
            },
            "inits": _asdict(init),
            "resends": resends_after - resends_before,
            "activations": store_activations(self.deps.db, cleared_at),
            "ticks": _asdict(ticks),
            "resend_source": resend_source,
        }

    def _cpu_by_pool(self) -> dict[str, float]:
        return {pool: cpu_seconds(proc) for pool, proc in self.pools.items()}

    def _watch(self, watched: list[str], cleared_at: float) -> dict[str, float]:
        """Poll the store until every watched host is up, or ``--max-wait-s``; first-up times."""
        first_up: dict[str, float] = {}
        pending = set(watched)
        deadline = cleared_at + self.args.max_wait_s
        polls = 0
        while pending and time.time() < deadline:
            polls += 1
            if polls % 25 == 0:
                self.ticks.gather()
            now = time.time()
            for host_id, status in self.statuses().items():
                if status == "up" and host_id not in first_up:
                    first_up[host_id] = now
                    pending.discard(host_id)
            time.sleep(POLL_S)
        if pending:
            console.print(f"[red]{len(pending)} hosts not up after {self.args.max_wait_s:g} s[/red]")
        return first_up

    def _drain(self, hung: list[str]) -> None:
        """Wait until no message is queued and no activation task runs (duplicates run late)."""
        queues = [q.name for q in self.app.conf.task_queues]
        quiet_since: float | None = None
        deadline = time.time() + DRAIN_MAX_S
        while time.time() < deadline:
            busy = queued_messages(self.app, queues) > 0 or self.events.in_flight() > 0
            quiet_since = None if busy else quiet_since or time.time()
            if quiet_since is not None and time.time() - quiet_since >= QUIET_S:
                return
            time.sleep(0.5)


def lease_quiet_servers(tmp: Path, tries: int = 4) -> tuple[Servers, list[Servers]]:
    """Lease servers whose Redis databases no one else is connected to, and the pairs passed over.

    A worker left running by another test session keeps consuming from the broker database it
    had, after its lease was given back: it would take the bench's tasks. Pairs with clients on
    them stay leased (so the next lease is another pair) until the caller closes them.
    """
    passed: list[Servers] = []
    try:
        for n in range(tries):
            servers = start_servers(tmp / f"servers{n}")
            found = clients_on(servers.broker_url) + clients_on(servers.redis_url)
            if found <= 0:
                return servers, passed
            console.print(f"[yellow]{found} connections of another session on a Redis pair: next[/yellow]")
            passed.append(servers)
    except BaseException:
        for spare in passed:
            spare.close()
        raise
    for spare in passed:
        spare.close()
    raise SystemExit(f"every Redis pair tried ({tries}) has another session's clients on it")


def compare(baseline: dict[str, Any], hung: dict[str, Any], max_wait_s: float) -> dict[str, Any]:
    """The hung run's time against the baseline's for the same hosts; drops per-host times."""
    base_up = baseline.pop("first_up")
    hung.pop("first_up")
    baseline.pop("watched")
    same = stats.recovery(base_up, hung.pop("watched"), 0.0)
    hung_s = hung["recovery"]["all_up_s"]
    return {
        "baseline_same_hosts_s": same.all_up_s,
        "baseline_same_hosts_median_s": same.median_s,
        # Medians compare even when a run did not bring every host up within the wait.
        "hung_median_ratio": stats.ratio(hung["recovery"]["median_s"], same.median_s),
        "hung_ratio": stats.ratio(hung_s, same.all_up_s),
        # Not all up within the wait: the ratio is at least the wait's.
        "hung_ratio_at_least": None if hung_s is not None else stats.ratio(max_wait_s, same.all_up_s),
    }


def _commit() -> str:
    """The measured code's commit (``-dirty`` when the work tree has changes)."""
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"],  # noqa: S607 - git from PATH
            cwd=readme.ROOT, capture_output=True, text=True, check=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip()


def _asdict(value: Any) -> dict[str, Any]:
    return {name: getattr(value, name) for name in value.__slots__}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run both scenarios; return their figures."""
    tmp = Path(tempfile.mkdtemp(prefix="ar-bench-recoveries-"))
    servers, spares = lease_quiet_servers(tmp)
    chosen = settings(args.tick_interval_s, args.hosts)
    if args.activation_threads > 0:
        # A connection per thread (the worker refuses fewer), and a queue room that grows with
        # the slots that start activations, as the setting says (default: 100).
        chosen["AUTORECOVERY_DB_POOL_MAX"] = str(max(args.activation_threads, 10))
        chosen["AUTORECOVERY_ACTIVATION_QUEUE_ROOM"] = str(100 * args.activation_threads)
    env = without_test_settings(servers.env(**chosen), chosen)
    os.environ.update(env)
    import workers
    from harness.sim.register import register_fleet

    deps = workers.container()
    results: dict[str, Any] = {
        "command": COMMAND,
        "cores": os.cpu_count(),
        "hosts": args.hosts,
        "processes": args.activation_processes + args.monitor_processes,
        "pools": {"activation": args.activation_processes, "monitoring": args.monitor_processes},
        "activation_pool": "threads" if args.activation_threads > 0 else "prefork",
        "activation_threads": args.activation_threads,
        "tick_interval_s": args.tick_interval_s,
        "settings": {
            k.removeprefix("AUTORECOVERY_"): v
            for k, v in env.items()
            if k.startswith("AUTORECOVERY_") and not k.endswith("_URL")
        },
        "goal_s": args.tick_interval_s + 10,
        "max_wait_s": args.max_wait_s,
        "commit": _commit(),
        "load_avg_start": round(os.getloadavg()[0], 1),
    }
    sim_proc, sim = start_simulator(env, tmp, args.hosts)
    pools: dict[str, Proc] = {}
    ticker = Ticker(workers.app, args.tick_interval_s)
    try:
        register_fleet(deps.fleet, sim.fleet(), actor="bench")
        with deps.db.transaction() as conn:  # steady state: the fleet is up
            conn.execute("UPDATE hosts SET status = 'up', reason = NULL, detail = NULL")
        # As deploy/ runs them: activations and monitoring in pools of their own.
        for pool, queue, count, kind in (
            ("activation", workers.ACTIVATION_QUEUE, args.activation_processes, "prefork"),
            ("monitoring", workers.MONITORING_QUEUE, args.monitor_processes, "prefork"),
        ):
            if pool == "activation" and args.activation_threads > 0:  # one process, in threads
                count, kind = args.activation_threads, "threads"
            pools[pool] = start_worker(
                env, tmp, queues=queue, concurrency=count, pool=kind, name=f"recoveries-{pool}"
            )
        bench = Bench(args, sim, deps, workers.app, pools)
        bench.events.start()
        ticker.start()
        hung = bench.host_ids[:: max(1, round(1 / args.hung_share))] if args.hung_share > 0 else []
        results["baseline"] = bench.scenario("baseline", [])
        results["hung_agents"] = bench.scenario("hung agents", hung)
        results.update(compare(results["baseline"], results["hung_agents"], args.max_wait_s))
        results["load_avg_end"] = round(os.getloadavg()[0], 1)
        results["tasks_seen"] = bench.events.names()
        bench.events.stop()
    finally:
        ticker.stop()
        for proc in pools.values():
            proc.stop()
        sim_proc.stop()
        deps.close()
        servers.close()
        for spare in spares:
            spare.close()
    return results


def main() -> None:
    """Parse arguments, run, print, save the JSON and rewrite the README's recovery figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--hung-share", type=float, default=0.1, help="share of agents whose init hangs")
    parser.add_argument("--tick-interval-s", type=float, default=2.0)
    parser.add_argument("--activation-processes", type=int, default=ACTIVATION_PROCESSES)
    parser.add_argument("--monitor-processes", type=int, default=MONITOR_PROCESSES)
    parser.add_argument(
        "--activation-threads", type=int, default=0,
        help="run the activation pool's process in this many threads (-P threads); 0: prefork",
    )
    parser.add_argument("--max-wait-s", type=float, default=120.0, help="give up watching after this")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README's figures")
    args = parser.parse_args()
    if args.activation_threads > 0 and args.activation_processes != 1:
        raise SystemExit("--activation-threads runs one activation process: drop --activation-processes")
    results = run(args)
    console.print(render_recoveries(results))
    out = RESULTS_THREADS if args.activation_threads > 0 else RESULTS
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    console.print(f"{out.relative_to(readme.ROOT)} written")
    if args.activation_threads > 0:
        console.print("README.md left alone: it shows the shipped prefork pool")
    elif not args.no_readme:
        readme.rewrite_recoveries(results)
        console.print(f"README.md: recovery figures rewritten from {RESULTS.relative_to(readme.ROOT)}")


if __name__ == "__main__":
    main()
