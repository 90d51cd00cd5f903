"""The README's recovery figures, rendered from ``bench/results/recoveries.json``."""

from __future__ import annotations

from typing import Any

SCENARIOS = ("baseline", "hung_agents")


def _s(value: float | None, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.1f} s"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def _all_up(run: dict[str, Any], max_wait_s: float | None) -> str:
    found = run["recovery"]
    if found["all_up_s"] is not None:
        return f"{found['all_up_s']:.1f} s"
    after = f"{max_wait_s:g} s" if max_wait_s else "the wait"
    return f"not all up after {after} ({found['up']:,} up)"


def _created(run: dict[str, Any]) -> str:
    by_state = run.get("activations")
    if by_state is None:
        return "n/a"
    return f"{sum(by_state.values()):,} ({by_state.get('abandoned', 0):,})"


def _pools(results: dict[str, Any]) -> tuple[int, int]:
    pools = results.get("pools") or {}
    return int(pools.get("activation", results["processes"])), int(pools.get("monitoring", 0))


def _phase(run: dict[str, Any], name: str) -> str:
    phase = (run.get("phases") or {}).get(name)
    if phase is None:
        return "n/a"
    return f"{phase['median']:.1f} / {phase['max']:.1f} s"


def _load(results: dict[str, Any]) -> str:
    start, end = results.get("load_avg_start"), results.get("load_avg_end")
    commit = results.get("commit")
    parts = []
    if start is not None and end is not None:
        parts.append(f"load average {start:g} at the start, {end:g} at the end")
    if commit:
        parts.append(f"code at commit `{commit}`")
    return f" ({'; '.join(parts)})" if parts else ""


def _rows(results: dict[str, Any]) -> list[str]:
    runs = [results[name] for name in SCENARIOS]
    wait = results.get("max_wait_s")
    act, mon = _pools(results)

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    return [
        f"| | baseline | {results['hung_agents']['hung']:,} agents hung |",
        "| --- | --- | --- |",
        row("hosts watched", lambda r: f"{r['recovery']['hosts']:,}"),
        row("fault cleared → all up", lambda r: _all_up(r, wait)),
        row("median host up after", lambda r: _s(r["recovery"]["median_s"])),
        row("hosts up per second", lambda r: "n/a" if r["per_s"] is None else f"{r['per_s']:.0f}"),
        row("activation admitted after, median / max", lambda r: _phase(r, "admitted")),
        row("activation waited in the queue, median / max", lambda r: _phase(r, "queue_wait")),
        row("activation's send step start → its close, median / max", lambda r: _phase(r, "send_to_close")),
        row(
            f"activation pool ({act} process{'es' if act != 1 else ''}) busy in activation tasks "
            "(task events)",
            lambda r: _pct(r["busy_share"]),
        ),
        row("the same by the tasks' own runtimes (worker log)", lambda r: _pct(r.get("busy_log_share"))),
        row(
            f"monitoring pool ({mon} process{'es' if mon != 1 else ''}) busy in the tick's tasks "
            "(worker log)",
            lambda r: _pct(r.get("busy_other_share")),
        ),
        row(
            f"worker processes' CPU (of {results['processes']} processes' time)",
            lambda r: _pct(r["cpu_share"]),
        ),
        row(
            f"activation pool's CPU per activation, both steps (its {act} process"
            f"{'es' if act != 1 else ''} and the worker's parent, /proc)",
            lambda r: "n/a" if r.get("activation_cpu_ms") is None else f"{r['activation_cpu_ms']:.1f} ms",
        ),
        row(
            "activation task run, median / p95 ms",
            lambda r: f"{_ms(r['tasks']['run_ms_median'])} / {_ms(r['tasks']['run_ms_p95'])}",
        ),
        row(
            "activation task messages / runs",
            lambda r: f"{r['tasks']['messages']:,} / {r['tasks']['runs']:,}",
        ),
        row(
            "duplicate runs (a message run again, not retried)",
            lambda r: f"{r['tasks']['duplicate_runs']:,}",
        ),
        row("inits run twice for one activation", lambda r: f"{r['inits']['duplicate_inits']:,}"),
        row("hosts that ran more than one init", lambda r: f"{r['inits']['hosts_with_several']:,}"),
        row("activations created (of them abandoned)", _created),
        row("re-sends (the store's count)", lambda r: f"{r['resends']:,}"),
        row("messages delivered more than once", lambda r: f"{r['tasks']['extra_deliveries']:,}"),
        row(
            "ticks closed / skipped until all up",
            lambda r: f"{r['ticks']['closed']:,} / {r['ticks']['skipped']:,}",
        ),
        row("longest wait for a closed tick", lambda r: _s(r["ticks"]["longest_gap_s"])),
    ]


def _ratio_text(ratio: float | None, at_least: float | None) -> str:
    if ratio is not None:
        return f"**{ratio:.2f}x** the baseline's time."
    if at_least is not None:
        return f"**more than {at_least:.1f}x** the baseline's time (not all came up within the wait)."
    return "no ratio (the baseline did not bring them all up)."


def _median_text(results: dict[str, Any]) -> str:
    ratio = results.get("hung_median_ratio")
    if ratio is None:
        return ""
    return (
        f" The median host of them was up after {_s(results['hung_agents']['recovery']['median_s'])} "
        f"against {_s(results.get('baseline_same_hosts_median_s'))}: **{ratio:.2f}x**."
    )


def verdict(results: dict[str, Any]) -> str:
    """Whether the baseline met the goal: all up within one tick plus 10 s, 0 duplicate runs."""
    base = results["baseline"]
    all_up = base["recovery"]["all_up_s"]
    duplicates = base["tasks"]["duplicate_runs"] + base["inits"]["duplicate_inits"]
    is_met = all_up is not None and all_up <= results["goal_s"] and duplicates == 0
    return "met" if is_met else "not met"


def _workers(results: dict[str, Any]) -> str:
    act, mon = _pools(results)
    if not mon:
        return f"one Celery worker with {results['processes']} processes on every queue"
    return (
        f"{results['processes']} worker processes as deploy/ runs them: an activation pool of {act} "
        f"on the `activation` queue and a monitoring pool of {mon} on the `monitoring` queue"
    )


def render_recoveries(results: dict[str, Any]) -> str:
    """The README's recovery block for one run's results."""
    hung = results["hung_agents"]
    found = hung["recovery"]
    if found["all_up_s"] is not None:
        came_up = f"the other {found['hosts']:,} hosts were all up {found['all_up_s']:.1f} s"
    else:
        came_up = f"of the other {found['hosts']:,} hosts {found['up']:,} were up {results['max_wait_s']:g} s"
    hung_line = (
        f"With {hung['hung']:,} agents hung (`init_hang`: the init is accepted and never ends), "
        f"{came_up} after the fault cleared, against "
        f"{_s(results.get('baseline_same_hosts_s'))} for the same hosts in the baseline of this run: "
        + _ratio_text(results.get("hung_ratio"), results.get("hung_ratio_at_least"))
        + _median_text(results)
    )
    return "\n".join(
        [
            f"`{results['command']}` (or `make bench`) on this project's {results['cores']}-core machine, "
            "which other work may share, so the figures are noisy"
            f"{_load(results)}: "
            f"{results['hosts']:,} simulated hosts (one simulator process over loopback HTTP), "
            f"PostgreSQL and Redis, {_workers(results)}, beat's entries sent every "
            f"{results['tick_interval_s']:g} s, caps raised (cluster 100%, fleet "
            f"{results['settings'].get('FLEET_CAP', 'n/a')}). Every host is taken out (`kvm_down`), "
            "then the fault is cleared at once and the store is watched until the hosts are up. "
            "Busy slots come from Celery's task events (a run lasts from its start to the end event "
            "the worker's main process sends, so it includes the hand-back of the result) and from "
            "the runtimes in the worker's log (which also has the tick's tasks, which send no "
            "events); CPU from `/proc`; duplicates from the events and the simulator's record of "
            "inits; re-sends from the store; where an activation's time goes from its record "
            "(activations that ended done). Written by the bench from "
            "`bench/results/recoveries.json`.",
            "",
            *_rows(results),
            "",
            hung_line,
            "",
            f"Goal (issue 14): all up within one tick plus 10 s ({results['goal_s']:g} s) with 0 "
            f"duplicate runs: **{verdict(results)}** in this run.",
        ]
    )
