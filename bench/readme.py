"""The README's benchmark figures, rendered from a run's JSON (never typed by hand).

python -m bench.readme    # rewrite the README's blocks from bench/results/*.json
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.recoveries_readme import render_recoveries

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LATEST = ROOT / "bench" / "results" / "latest.json"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"
LATEST_RECOVERIES = ROOT / "bench" / "results" / "recoveries.json"
RECOVERIES_START, RECOVERIES_END = "<!-- bench-recoveries:start -->", "<!-- bench-recoveries:end -->"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def _pull_table(results: dict[str, Any]) -> list[str]:
    rate = results["sim_rate"]["reports_per_s"]
    lines = [
        "| worker processes | tick wall s | worker CPU s | reports/s | of the simulator's rate "
        "| SQL statements per batch |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, r in sorted(results["pull"].items(), key=lambda kv: int(kv[0])):
        collected = r["pulled"] / r["wall_s"]
        lines.append(
            f"| {n} | {r['wall_s']:.2f} | {r['worker_cpu_s']:.2f} | {collected:,.0f} | "
            f"{100 * collected / rate:.0f}% | {r['statements_per_batch']:.1f} |"
        )
    return lines


def _push_table(push: dict[str, Any]) -> list[str]:
    lines = [
        "| worker processes | tick wall s | worker CPU s | batches | SQL statements per batch |",
        "| --- | --- | --- | --- | --- |",
    ]
    for n in ("1", "2"):
        r = push[n]
        lines.append(
            f"| {n} | {r['wall_s']:.2f} | {r['worker_cpu_s']:.2f} | {r['batches']} | "
            f"{r['statements_per_batch']:.1f} |"
        )
    return lines


def _single_row(api: dict[str, Any]) -> tuple[str, str, str, str]:
    """The single-push row: its API CPU, beside a bare uvicorn request's when measured."""
    single, bare = api["single"], api.get("floor")
    measured = f"{single['api_cpu_ms_per_request']:.2f} ms ({single['per_api_core_per_s']:,} per core-second)"
    if bare is None:
        return ("single-report push, API CPU per request", measured, "", "≤ 1 ms")
    return (
        "single-report push, API CPU per request (÷ a bare uvicorn request, `bench.api_floor`)",
        f"{measured} ÷ {bare['cpu_ms_per_request']:.2f} ms",
        _ratio(single["api_cpu_ms_per_request"], bare["cpu_ms_per_request"]),
        "≤ 1 ms",
    )


def _limit_lines(results: dict[str, Any]) -> list[str]:
    """The product beside what its work costs at best, as ratios of one run."""
    push, named, limit, floor = results["push"], results["named"], results["limit"], results["push"]["floor"]
    api, trips = results["api"], results["push"]["round_trips"]
    bulk = api["bulk"]
    pull1 = results["pull"]["1"]
    push_us = 1e6 * push["1"]["wall_s"] / push["hosts"]
    load = results.get("load", {})
    rows = [
        (
            "pulling tick ÷ limit client, CPU (1 process)",
            f"{pull1['worker_cpu_s']:.2f} s ÷ {limit['cpu_s']:.2f} s",
            _ratio(pull1["worker_cpu_s"], limit["cpu_s"]),
            "≤ 1.2x",
        ),
        (
            "agents named by DNS ÷ by IP, worker CPU (1 process)",
            f"{named['named']['worker_cpu_s']:.2f} s ÷ {named['ip']['worker_cpu_s']:.2f} s",
            _ratio(named["named"]["worker_cpu_s"], named["ip"]["worker_cpu_s"]),
            "≤ 1.1x",
        ),
        (
            "pushed tick per host ÷ PostgreSQL's floor per row (1 process, wall)",
            f"{push_us:.1f} µs ÷ {floor['us_per_row']:.1f} µs",
            _ratio(push_us, floor["us_per_row"]),
            "≤ 2x",
        ),
        _single_row(api),
        (
            "bulk push, API CPU per report",
            f"{bulk['api_cpu_us_per_report']:.0f} µs ({bulk['per_api_core_per_s']:,} per core-second)",
            "",
            "",
        ),
        (
            f"round trips to PostgreSQL per {trips['batch_size']:,}-host batch",
            ", ".join(str(n) for n in trips["per_batch"]),
            "",
            "≤ 5",
        ),
    ]
    own = results.get("agent_addresses") == "own"
    lines = [
        "**Close to the limit** (same run; the ratios count, not the seconds): the limit client is "
        "bare aiohttp + msgspec fetching and decoding the same reports in the same batches; named "
        + (
            "agents resolve `<host>.agents.bench.test` to their own loopback address inside the "
            "worker (through `getaddrinfo`, without a DNS server's latency); every agent of the "
            "limit client, the 1-process tick and both named and IP ticks has its own address "
            "(127.x.y.z), so no connection serves two agents; the "
            if own
            else "agents resolve `<host>.agents.bench.test` to loopback inside the worker (through "
            "`getaddrinfo`, without a DNS server's latency), each host on its own connection; the "
        )
        + "floor is `UPDATE reports … FROM unnest` of every pushed host's time.",
        "",
        "| figure | measured | ratio | aim |",
        "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]
    if load:
        lines += [
            "",
            f"Load average {load['start']:.1f} at the start, {load['end']:.1f} at the end, on "
            f"{results['cores']} cores (the bench's own processes included): the machine may be "
            "shared, so absolute times vary from run to run and only the ratios of one run compare.",
        ]
    return lines


def render(results: dict[str, Any]) -> str:
    """The README's benchmark block for one run's results."""
    hosts, push, naive, sim = results["hosts"], results["push"], results["naive"], results["sim_rate"]
    pull2 = results["pull"]["2"]
    appear, clear = results["faults"]["appear"], results["faults"]["clear"]
    best = max(results["pull"].values(), key=lambda r: r["pulled"] / r["wall_s"])
    lines = [
        f"`{results['command']}` (or `make bench`) on this project's {results['cores']}-core machine, with "
        "the machine's PostgreSQL and Redis; each tick is sent through the broker, cut into batches "
        f"of {results['batch_size']} that real Celery worker processes run, and timed from sending to "
        "its summary (median of 3 ticks after a warm-up). Worker CPU is read from `/proc`. This block "
        "is written by the benchmark from `bench/results/latest.json`.",
        "",
        f"**{hosts:,} hosts pulled** from the simulator (one process, every agent over loopback HTTP"
        + (
            f"; from {results['agent_addresses_shared_from']} worker processes on, and for the load "
            "processes, every agent at one address: a connection per agent per process would pass the "
            "simulator's open-file limit"
            if "agent_addresses_shared_from" in results
            else ""
        )
        + f"). The simulator alone serves {sim['reports_per_s']:,.0f} reports/s to two load processes that "
        "neither parse nor store:",
        "",
        *_pull_table(results),
        "",
        f"Collection reaches at best {100 * (best['pulled'] / best['wall_s']) / sim['reports_per_s']:.0f}% "
        "of the simulator's own rate. What bounds it here is CPU: the simulator and the worker "
        f"processes share {results['cores']} cores, so worker processes beyond the free cores add no "
        "speed; on a real fleet every agent serves only itself, and the pool scales with the "
        "workers' machines.",
        "",
        f"Faults (2 processes): {appear['transitions']} hosts losing kvm are taken out in one tick "
        f"({appear['wall_s']:.2f} s, {appear['statements']} statements); when they recover, the next "
        f"tick queues {clear['enqueued']} activations ({clear['wall_s']:.2f} s, {clear['statements']} "
        "statements).",
        "",
        f"**{push['hosts']:,} hosts with pushed reports** (no HTTP in the tick"
        + (f"; batches of up to {push['batch_size']:,} of them" if "batch_size" in push else "")
        + "):",
        "",
        *_push_table(push),
        "",
        f"From 1 to 2 worker processes: {_ratio(push['1']['wall_s'], push['2']['wall_s'])} faster.",
        "",
        *_limit_lines(results),
        "",
        f"**Naive baseline** (same run, {hosts:,} hosts): one Celery task per host on 2 worker "
        f"processes takes {naive['wall_s']:.2f} s of wall time, {naive['worker_cpu_s']:.2f} s of "
        f"worker CPU, {naive['statements']:,} statements and {naive['broker_messages']:,} broker "
        f"messages{_answered(naive)}. Against it the pulling tick on 2 processes takes "
        f"{_ratio(naive['wall_s'], pull2['wall_s'])} less wall time, "
        f"{_ratio(naive['worker_cpu_s'], pull2['worker_cpu_s'])} less worker CPU and "
        f"{_ratio(naive['statements'], pull2['statements'])} fewer statements, and sends no broker "
        "message for a healthy host.",
    ]
    return "\n".join(lines)


def _answered(naive: dict[str, Any]) -> str:
    """How many of the naive tasks' pulls were answered (results from before it was counted: none)."""
    if "answered" not in naive:
        return ""
    return f" ({naive['answered']:,} of {naive['broker_messages']:,} agents answered its pulls)"


def render_partial(results: dict[str, Any]) -> str:
    """What a ``--only`` run measured: its ticks and whichever of the ratios it has both sides of."""
    lines = [
        f"`{results['command']}`, load average {results['load']['start']:.1f} at the start, "
        f"{results['load'].get('end', float('nan')):.1f} at the end"
    ]
    for n, r in sorted(results.get("pull", {}).items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"pulling tick, {n} process(es): wall {r['wall_s']:.2f} s, worker CPU {r['worker_cpu_s']:.2f} s "
            f"(all walls {r['wall_s_all']}), {r['pulled']} pulled"
        )
    limit, pull1, named = results.get("limit"), results.get("pull", {}).get("1"), results.get("named")
    if limit:
        lines.append(f"limit client: CPU {limit['cpu_s']:.2f} s, wall {limit['wall_s']:.2f} s")
    if limit and pull1:
        lines.append(
            f"pulling tick ÷ limit client, CPU: {pull1['worker_cpu_s']:.2f} ÷ {limit['cpu_s']:.2f} = "
            f"{_ratio(pull1['worker_cpu_s'], limit['cpu_s'])} (aim ≤ 1.2x)"
        )
    if named:
        ip, dns = named["ip"]["worker_cpu_s"], named["named"]["worker_cpu_s"]
        lines.append(f"named ÷ IP, worker CPU: {dns:.2f} ÷ {ip:.2f} = {_ratio(dns, ip)} (aim ≤ 1.1x)")
        if limit:
            lines.append(f"IP tick ÷ limit client, CPU: {_ratio(ip, limit['cpu_s'])}")
    push = results.get("push")
    if push:
        push_us = 1e6 * push["1"]["wall_s"] / push["hosts"]
        floor = push["floor"]["us_per_row"]
        lines.append(
            f"pushed tick per host ÷ floor: {push_us:.1f} µs ÷ {floor:.1f} µs = {_ratio(push_us, floor)} "
            f"(aim ≤ 2x); round trips per batch {push['round_trips']['per_batch']}"
        )
    api = results.get("api")
    if api:
        bare = api.get("floor")
        beside = f"; a bare uvicorn request {bare['cpu_ms_per_request']:.2f} ms" if bare else ""
        lines.append(
            f"single push: {api['single']['api_cpu_ms_per_request']:.2f} ms API CPU (aim ≤ 1 ms){beside}"
        )
    return "\n".join(lines)


def rewrite(results: dict[str, Any], readme: Path = README) -> None:
    """Replace the README's benchmark block with the figures of ``results``."""
    _replace(readme, START, END, render(results))


def rewrite_recoveries(results: dict[str, Any], readme: Path = README) -> None:
    """Replace the README's recovery block with the figures of ``results``."""
    _replace(readme, RECOVERIES_START, RECOVERIES_END, render_recoveries(results))


def _replace(readme: Path, start: str, end: str, body: str) -> None:
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{readme} has no {start} … {end} block")
    readme.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text), encoding="utf-8")


def block(readme: Path = README, start: str = START, end: str = END) -> str:
    """One of the README's benchmark blocks as it stands (the tick's by default)."""
    match = re.search(
        re.escape(start) + r"\n(.*?)\n" + re.escape(end), readme.read_text(encoding="utf-8"), re.S
    )
    return match.group(1) if match else ""


if __name__ == "__main__":
    rewrite(json.loads(LATEST.read_text(encoding="utf-8")))
    rewrite_recoveries(json.loads(LATEST_RECOVERIES.read_text(encoding="utf-8")))
