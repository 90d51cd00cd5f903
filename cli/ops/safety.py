"""Safety and the plan: ``plan``, ``pause``, ``resume`` and ``safety``."""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from rich.table import Table
from rich.text import Text

from cli.ops.client import ApiClient, Exit
from cli.ops.live import every
from cli.ops.render import Output, cell, new_table, pause_text, status_cell, when

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
#: Units written out (``5 minutes``, ``2 hours``, ``90 sec``), as people type them.
_WORDS = re.compile(
    r"(\d+)\s*(d|days?|h|hrs?|hours?|m|mins?|minutes?|s|secs?|seconds?)", re.IGNORECASE
)
_WORD_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


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
            cell((e["detail"] or "").removeprefix(f"{e['code']}: ")),  # the WHY column has the code
        )
    out.out.print(table)
    out.say(f"{plan['activate']} to activate, {plan['skip']} left as they are")
    return Exit.OK


def duration_s(text: str) -> float:
    """Parse ``30m``, ``2h``, ``600s``, ``1d``, ``1h30m``, ``5 minutes``, ``2 hours 30 min`` (or
    bare seconds) into seconds.

    Raises:
        argparse.ArgumentTypeError: anything else, or zero.
    """
    value = text.strip().lower()
    match = _DURATION.fullmatch(value)
    words = re.sub(r"[\s,]+(and\s+)?", " ", value).strip()
    if value.isdigit():
        seconds = float(value)
    elif value and match:
        d, h, m, sec = (int(g or 0) for g in match.groups())
        seconds = float(((d * 24 + h) * 60 + m) * 60 + sec)
    elif words and re.fullmatch(rf"(?:{_WORDS.pattern})(?:\s*(?:{_WORDS.pattern}))*", words, re.IGNORECASE):
        seconds = float(sum(int(n) * _WORD_S[unit[0]] for n, unit in _WORDS.findall(words)))
    else:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration like 30m, 2h, 90s, 1h30m or '5 minutes'"
        )
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0s")
    return seconds


class DurationAction(argparse.Action):
    """Take ``--for 5 minutes`` as one duration (its words joined), refused naming the option."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        text = " ".join(values) if isinstance(values, list) else str(values)
        try:
            setattr(namespace, self.dest, duration_s(text))
        except argparse.ArgumentTypeError as exc:
            parser.error(f"argument {option_string}: {exc}")


def cluster_line(c: dict[str, Any]) -> Text:
    """``healthy 47 of 50, limit 12 (2 activating)``, red when fewer than all are up."""
    up, hosts = c.get("up", 0), c.get("hosts", 0)
    busy = f" ({c['in_flight']} activating)" if c.get("in_flight") else ""
    return Text(
        f"healthy {up} of {hosts}, limit {c.get('limit')}{busy}",
        style="green" if up == hosts else "yellow" if up else "red",
    )


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


def _print_holds(held: list[dict[str, Any]], out: Output) -> None:
    """Print the hosts by the holds they carry, up hosts included (an up host's quarantine counts)."""
    out.out.print()
    if not held:
        out.say("no host carries a hold")
        return
    table = new_table("HOLD", "HOSTS", "BY STATUS", "E.G.", title="holds (whatever the status)")
    for h in held:
        by_status = ", ".join(f"{status} {n}" for status, n in sorted(h["by_status"].items()))
        more = len(h["examples"]) < h["hosts"]
        table.add_row(
            cell(h["hold"]),
            cell(h["hosts"]),
            cell(by_status),
            cell(", ".join(h["examples"]) + (" …" if more else "")),
        )
    out.out.print(table)


def cmd_safety(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Show what gates automatic activation; with ``--watch``, again and again."""
    if args.watch is None:
        return _safety_once(api, out)
    return every(out, "autorecovery safety", lambda: _safety_once(api, out), args.watch, args.watch_count)


def _safety_once(api: ApiClient, out: Output) -> int:
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
    for c in state.get("clusters") or []:
        grid.add_row(f"cluster {c['cluster']}", cluster_line(c))
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
    _print_holds(state.get("holds") or [], out)
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
