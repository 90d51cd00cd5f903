"""Safety and the plan: ``plan``, ``pause``, ``resume`` and ``safety``."""

from __future__ import annotations

import argparse
import re
from typing import Any
from urllib.parse import quote

from rich.table import Table
from rich.text import Text

from cli.ops.client import ApiClient, Exit
from cli.ops.render import Output, cell, new_table, pause_text, status_cell, when

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def _say_gates(out: Output, gate: str | None, pauses: list[dict[str, Any]]) -> None:
    if gate:
        out.say(("observer holds automatic activation: ", "bold yellow"), gate)
    for p in pauses:
        out.say(("paused ", "bold yellow"), pause_text(p))


def cmd_plan(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Show what the next monitoring tick would do for each host, and why."""
    plan = api.call("GET", "/plan", params={"cluster": args.cluster})
    if out.json_mode:
        out.data(plan)
        return Exit.OK
    _say_gates(out, plan.get("gate"), plan.get("pauses") or [])
    table = new_table("HOST", "CLUSTER", "STATUS", "NEXT", "ACTION", "WHY", "DETAIL")
    for e in plan["hosts"]:
        action = Text(e["action"], style="bold green" if e["action"] == "activate" else "")
        table.add_row(
            cell(e["host_id"]),
            cell(e["cluster"]),
            status_cell(e["status"]),
            status_cell(e["next_status"]),
            action,
            cell(e["code"]),
            cell(e["detail"]),
        )
    out.out.print(table)
    out.say(f"{plan['activate']} to activate, {plan['skip']} left as they are")
    return Exit.OK


def duration_s(text: str) -> float:
    """Parse ``30m``, ``2h``, ``600s``, ``1d``, ``1h30m`` (or bare seconds) into seconds.

    Raises:
        argparse.ArgumentTypeError: anything else, or zero.
    """
    value = text.strip().lower()
    match = _DURATION.fullmatch(value)
    if value.isdigit():
        seconds = float(value)
    elif value and match:
        d, h, m, sec = (int(g or 0) for g in match.groups())
        seconds = float(((d * 24 + h) * 60 + m) * 60 + sec)
    else:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30m, 2h, 600s or 1h30m")
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0s")
    return seconds


def _scope_path(cluster: str | None) -> str:
    return "/pause" if cluster is None else "/clusters/" + quote(cluster, safe="") + "/pause"


def cmd_pause(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Stop automatic activation, fleet-wide or for one cluster, with a reason and an expiry."""
    body: dict[str, Any] = {"reason": args.reason}
    if args.duration is not None:
        body["duration_s"] = args.duration
    pause = api.call("PUT", _scope_path(args.cluster), body=body)
    if out.json_mode:
        out.data(pause)
    else:
        out.say("automatic activation paused ", pause_text(pause))
        out.say(
            "manual activation still works; lift it with `autorecovery resume"
            + (f" --cluster {args.cluster}`" if args.cluster else "`")
        )
    return Exit.OK


def cmd_resume(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Lift a pause, fleet-wide or of one cluster."""
    pause = api.call("DELETE", _scope_path(args.cluster))
    if out.json_mode:
        out.data(pause)
    else:
        out.say("automatic activation resumed; lifted the pause ", pause_text(pause))
    return Exit.OK


def cmd_safety(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Show what gates automatic activation: the observer, pauses, activations, incidents."""
    state = api.call("GET", "/safety")
    if out.json_mode:
        out.data(state)
        return Exit.OK
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    gate = state.get("gate")
    grid.add_row(
        "observer", Text(gate, style="yellow") if gate else Text("allows automatic activation", style="green")
    )
    grid.add_row("last full tick", when(state.get("last_full_tick_at")))
    grid.add_row(
        "silent hosts", cell(f"{state.get('silent_hosts', 0)} of {state.get('observed_hosts', 0)} observed")
    )
    in_flight = state.get("in_flight") or {}
    grid.add_row("in flight", cell(", ".join(f"{c}: {n}" for c, n in sorted(in_flight.items())) or "none"))
    out.out.print(grid)
    pauses = state.get("pauses") or []
    out.out.print()
    if pauses:
        table = new_table("SCOPE", "OWNER", "SINCE", "UNTIL", "REASON", title="pauses")
        for p in pauses:
            table.add_row(
                cell(p["scope"]),
                cell(p["owner"]),
                when(p["created_at"]),
                when(p["expires_at"]) if p.get("expires_at") else cell("lifted by hand"),
                cell(p["reason"]),
            )
        out.out.print(table)
    else:
        out.say("no pause in force")
    incidents = state.get("incidents") or []
    if incidents:
        out.out.print()
        table = new_table(
            "INCIDENT", "CLUSTER", "REASON", "SUBJECT", "HOSTS", "OPENED", title="open incidents"
        )
        for i in incidents:
            table.add_row(
                cell(i["id"]),
                cell(i["cluster"]),
                cell(i["reason"]),
                cell(i["subject"]),
                cell(i["hosts"]),
                when(i["opened_at"]),
            )
        out.out.print(table)
    else:
        out.say("no open incident")
    return Exit.OK
