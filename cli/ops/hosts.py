"""``autorecovery hosts …``: list, show, activate (and follow), autorecovery flag, maintenance, holds."""

from __future__ import annotations

import argparse
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from rich.table import Table
from rich.text import Text

from cli.ops.client import ApiClient, ApiFailure, Exit
from cli.ops.live import every
from cli.ops.render import (
    Output,
    age,
    cell,
    new_table,
    reason_text,
    status_cell,
    when,
)
from cli.ops.wait import DEFAULT_WAIT_S, watch
from models.safety import HOST_HOLDS

PAGE_SIZE = 1000
#: Characters of a ``-o wide`` line in a pipe.
WIDE_COLUMNS = 400
#: ``--held`` without a kind: any hold.
ANY_HOLD = "any"
#: The holds a host can carry, as the API's host list names them.
HOLDS = HOST_HOLDS


def host_path(host_id: str) -> str:
    """The API path of a host, its id escaped."""
    return "/hosts/" + quote(host_id, safe="")


def cmd_hosts_list(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """List hosts, following pages until ``--limit`` (default: all); with ``--watch``, again and again."""
    if args.watch is None:
        return _list_once(api, args, out)
    draw = lambda: _list_once(api, args, out)  # noqa: E731 - one round of the watch
    return every(out, "autorecovery hosts list", draw, args.watch, args.watch_count)


def _fetch(api: ApiClient, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str | None]:
    """The hosts the filters select, and where the next page starts (None: no more).

    ``--decision`` and ``--held`` filter here, over every page (the API filters the rest).
    """
    autorecovery = {"on": "true", "off": "false"}.get(args.autorecovery or "")
    local = args.decision is not None or args.held is not None
    hosts: list[dict[str, Any]] = []
    after = args.after
    while True:
        want = PAGE_SIZE if args.limit is None or local else min(PAGE_SIZE, args.limit - len(hosts))
        page = api.call(
            "GET",
            "/hosts",
            params={
                "status": args.status,
                "cluster": args.cluster,
                "autorecovery": autorecovery,
                "limit": want,
                "after": after,
            },
        )
        hosts.extend(h for h in page["hosts"] if _selected(h, args))
        after = page.get("next_after")
        if after is None or (args.limit is not None and len(hosts) >= args.limit):
            break
    if args.limit is not None and len(hosts) > args.limit:
        after, hosts = hosts[args.limit - 1]["id"], hosts[: args.limit]
    return hosts, after


def holds_of(h: dict[str, Any]) -> list[str]:
    """The host's own holds: the list view's ``holds`` (names), else ``held_by``; none if absent."""
    names = h.get("holds")
    if isinstance(names, list):
        return [str(n) for n in names]
    return [str(item.get("hold")) for item in h.get("held_by") or [] if isinstance(item, dict)]


def _selected(h: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.decision is not None and h.get("last_decision") != args.decision:
        return False
    if args.held is None:
        return True
    held = holds_of(h)
    return bool(held) if args.held == ANY_HOLD else args.held in held


def down_for_s(h: dict[str, Any], now: datetime | None) -> float | None:
    """Seconds since a host that is out of service left ``up`` (None: up, never up, or unknown)."""
    since = h.get("status_changed_at")
    if h.get("status") in ("up", "unassigned") or not since or now is None:
        return None
    try:
        return max((now - datetime.fromisoformat(since)).total_seconds(), 0.0)
    except (TypeError, ValueError):
        return None


def _list_once(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    hosts, after = _fetch(api, args)
    if out.json_mode:
        out.data({"hosts": hosts, "next_after": after})
        return Exit.OK
    wide = args.output == "wide"
    columns = ["HOST", "CLUSTER", "STATUS", "REASON", "DOWN FOR", "AUTORECOVERY", "HOLDS", "REPORT AGE"]
    columns += ["ACTIVATING", "LAST DECISION"] + (["STATUS SINCE", "DETAIL", "AGENT"] if wide else [])
    table = new_table(*columns)
    counts: dict[str, int] = {}
    now = api.server_now()  # the API's clock: a skewed laptop must not shift "down for"
    for h in hosts:
        counts[h["status"]] = counts.get(h["status"], 0) + 1
        down = down_for_s(h, now)
        row = [
            cell(h["id"]),
            cell(h["cluster"]),
            status_cell(h["status"]),
            cell(h.get("reason")),
            age(down),
            cell("on" if h["autorecovery"] else "off"),
            Text(", ".join(holds_of(h)), style="yellow"),
            age(h.get("report_age_s")),
            cell("yes" if h.get("in_flight") else ""),
            cell(h.get("last_decision")),
        ]
        if wide:
            row += [when(h.get("status_changed_at")), cell(h.get("detail")), cell(h.get("agent_url"))]
        table.add_row(*row)
    # -o wide in a pipe: every column whole, however wide the line (a terminal folds them).
    if wide and not out.out.is_terminal:
        out.out.width = WIDE_COLUMNS
    out.out.print(table)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    more = f"; more after {after} (--after {after})" if after else ""
    out.say(f"{len(hosts)} host(s)" + (f": {summary}" if summary else "") + more)
    return Exit.OK


def _activation_line(a: dict[str, Any]) -> Text:
    fence = f", fence {a['fence']}" if a.get("fence") is not None else ""
    outcome = f": {a['outcome']}" if a.get("outcome") and a["outcome"] != a.get("state") else ""
    detail = f" ({a['detail']})" if a.get("detail") else ""
    return Text(f"{a['id']} {a['state']}{outcome}{detail} — {a['trigger']} by {a['actor']}{fence}")


def cmd_hosts_show(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Show a host: status, problems, last decision, why it is not back, activations."""
    h = api.call("GET", host_path(args.host_id))
    if out.json_mode:
        out.data(h)
        return Exit.OK
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    # The reason is why the host went out; the current report's problems are listed below.
    reason = f"  went out for {h['reason']}: {h.get('detail') or ''}" if h.get("reason") else ""
    grid.add_row("host", Text.assemble(Text(h["id"], style="bold"), "  ", status_cell(h["status"]), reason))
    grid.add_row("cluster", cell(h["cluster"]))
    grid.add_row("agent", cell(h["agent_url"]))
    grid.add_row("autorecovery", cell("on" if h["autorecovery"] else "off (only an admin activates it)"))
    grid.add_row("status since", when(h.get("status_changed_at")))
    grid.add_row("report age", age(h.get("report_age_s")))
    if h["status"] != "up":
        clean = h.get("last_clean_at")
        grid.add_row("last clean", when(clean) if clean else cell("not seen since it went out"))
    problems = h.get("problems") or []
    grid.add_row(
        "problems",
        Text("\n".join(f"{p['reason']}: {p['detail']}" for p in problems))
        if problems
        else Text("none", style="green"),
    )
    last = h.get("last_decision") or {}
    if last.get("code"):
        at = f" (at {when(last['at'])})" if last.get("at") else ""
        grid.add_row("last decision", cell(reason_text(last["code"], last.get("detail")) + at))
    why = h.get("why_not_recovered")
    if why:
        grid.add_row("why not up", cell(reason_text(why.get("code"), why.get("detail"))))
    for label, text in _hold_lines(h):
        grid.add_row(label, Text(text, style="yellow"))
    running = h.get("activation")
    grid.add_row("activation", _activation_line(running) if running else cell("none running"))
    out.out.print(grid)
    recent = h.get("recent_activations") or []
    if recent:
        out.out.print()
        table = new_table(
            "ACTIVATION",
            "TRIGGER",
            "ACTOR",
            "STATE",
            "OUTCOME",
            "DETAIL",
            "QUEUED",
            "ENDED",
            title="recent activations",
        )
        for a in recent:
            table.add_row(
                cell(a["id"]),
                cell(a["trigger"]),
                cell(a["actor"]),
                cell(a["state"]),
                cell(a.get("outcome")),
                cell(a.get("detail")),
                when(a.get("queued_at")),
                when(a.get("ended_at")),
            )
        out.out.print(table)
        _print_steps(out, recent)
    return Exit.OK


def _print_steps(out: Output, recent: list[dict[str, Any]]) -> None:
    """Each step of the recent activations with its task id (what Flower lists)."""
    rows = [(a["id"], s) for a in recent for s in a.get("steps") or []]
    if not rows:
        return
    out.out.print()
    table = new_table("ACTIVATION", "STEP", "TASK", "OUTCOME", "AT", title="activation steps")
    for activation_id, step in rows:
        task = cell(step.get("task_id"))
        table.add_row(cell(activation_id), cell(step["step"]), task, cell(step["outcome"]), when(step["at"]))
    out.out.print(table)


def _hold_lines(h: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per hold in force now (``held_by``), with the command that lifts it."""
    lifts = {
        "quarantine": f" (clear it with `autorecovery hosts quarantine-clear {h['id']}`)",
        "backoff": f" (retry now with `autorecovery hosts backoff-reset {h['id']}`)",
    }
    lines = []
    for item in h.get("held_by") or []:
        since = f" since {when(item['since'])}" if item.get("since") else ""
        until = f" until {when(item['until'])}" if item.get("until") else ""
        lines.append(
            (f"held: {item['hold']}", f"{item['detail']}{since}{until}{lifts.get(item['hold'], '')}")
        )
    return lines


def cmd_hosts_activate(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Ask for a manual activation; with ``--wait``, follow it until it ends."""
    if args.timeout is not None and not args.wait:
        raise ApiFailure(Exit.USAGE, "--timeout only applies with --wait", "add --wait")
    started = time.monotonic()
    force = {"force": "true"} if args.force else None
    answer = api.call("POST", host_path(args.host_id) + "/activate", params=force)
    if not args.wait:
        if out.json_mode:
            out.data(answer)
        else:
            out.say(
                f"activation {answer['activation_id']} of {answer['host_id']} queued "
                f"(Celery task id {answer['task_id']})"
            )
            out.say(f"follow it with `autorecovery hosts show {answer['host_id']}`, or use --wait next time")
        return Exit.OK
    timeout_s = DEFAULT_WAIT_S if args.timeout is None else args.timeout
    return wait_for_activation(api, out, answer, started + timeout_s, timeout_s)


def _find(host: dict[str, Any], activation_id: str) -> dict[str, Any] | None:
    for record in [host.get("activation"), *(host.get("recent_activations") or [])]:
        if record and record.get("id") == activation_id:
            return dict(record)
    return None


def wait_for_activation(
    api: ApiClient, out: Output, answer: dict[str, Any], deadline: float, timeout_s: float
) -> int:
    """Poll the host until the activation ends; exit 0 when the host is up, 1 if not, 3 on timeout."""
    host_id, activation_id = answer["host_id"], answer["activation_id"]
    record: dict[str, Any] = {"id": activation_id, "state": answer.get("state", "queued")}
    host: dict[str, Any] = {}

    def look() -> tuple[str, str]:
        nonlocal host, record
        host = api.call("GET", host_path(host_id))
        record = _find(host, activation_id) or record
        return str(record.get("state")), f"host {host.get('status')}"

    label = Text.assemble((host_id, "bold"), f": activation {activation_id}")
    try:
        state = watch(out, label, look, deadline)
    except KeyboardInterrupt:
        out.err.print(
            f"stopped waiting; activation {activation_id} goes on: `autorecovery hosts show {host_id}`"
        )
        return 130
    if out.json_mode:
        out.data({"activation": record, "host": host})
    if state is None:
        raise ApiFailure(
            Exit.TIMEOUT,
            f"activation {activation_id} of {host_id} is still {record.get('state')} after {timeout_s:g}s",
            "it goes on without us: follow it with "
            f"`autorecovery hosts show {host_id}`, or wait longer with --timeout",
        )
    if state == "done" or host.get("status") == "up":
        out.say(Text("✓ ", style="green"), (host_id, "bold"), " is up")
        return Exit.OK
    outcome = record.get("outcome")
    why = f", {outcome}" if outcome and outcome != state else ""
    detail = f" ({record['detail']})" if record.get("detail") else ""
    reason = f" ({host['reason']})" if host.get("reason") else ""
    raise ApiFailure(
        Exit.FAILED,
        f"{host_id} is not up: activation {state}{why}{detail}; the host is {host.get('status')}{reason}",
        f"see why with `autorecovery hosts show {host_id}`",
    )


def cmd_hosts_autorecovery(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Turn a host's autorecovery on or off."""
    answer = api.call("PUT", host_path(args.host_id) + "/autorecovery", body={"enabled": args.state == "on"})
    if out.json_mode:
        out.data(answer)
    elif args.state == "on":
        out.say(f"{args.host_id}: autorecovery on (the next tick activates it once it is healthy)")
    else:
        out.say(
            f"{args.host_id}: autorecovery off (only `autorecovery hosts activate "
            f"{args.host_id}` brings it back)"
        )
    return Exit.OK


def cmd_hosts_maintenance(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Put a host into maintenance; only a manual activation brings it back."""
    body = {"reason": args.reason} if args.reason else {}
    answer = api.call("POST", host_path(args.host_id) + "/maintenance", body=body)
    if out.json_mode:
        out.data(answer)
    else:
        out.say(
            f"{args.host_id} is in maintenance ({answer.get('detail')}); bring it back with "
            f"`autorecovery hosts activate {args.host_id}`"
        )
    return Exit.OK


def cmd_hosts_holds(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Clear a host's quarantine and backoff (``quarantine-clear``) or its backoff only."""
    action = "/quarantine/clear" if args.hosts_command == "quarantine-clear" else "/backoff/reset"
    answer = api.call("POST", host_path(args.host_id) + action)
    if out.json_mode:
        out.data(answer)
        return Exit.OK
    was = answer.get("previous") or {}
    parts = []
    if args.hosts_command == "quarantine-clear":
        parts.append(
            f"quarantine cleared (quarantined since {when(was.get('quarantined_at'))}: "
            f"{was.get('quarantine_reason')})"
            if was.get("quarantined_at")
            else "was not quarantined"
        )
    parts.append(
        f"backoff reset (after {was.get('failures', 0)} failed attempt(s))"
        if was.get("failures") or was.get("next_attempt_at")
        else "had no backoff"
    )
    out.say(f"{args.host_id}: " + "; ".join(parts))
    return Exit.OK


def cmd_hosts_clear_agent_hold(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Clear an ``agent_fence_ahead`` hold (after the agent's state was restored)."""
    answer = api.call("POST", host_path(args.host_id) + "/clear-agent-hold")
    if out.json_mode:
        out.data(answer)
    else:
        out.say(
            f"{args.host_id}: agent hold cleared; its agent was told fence {answer.get('fence')} "
            f"(it now accepts from {answer.get('agent_highest')})"
        )
    return Exit.OK
