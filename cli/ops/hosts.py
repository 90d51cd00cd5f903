"""``autorecovery hosts …``: list, show, activate (and follow), autorecovery flag, maintenance, holds."""

from __future__ import annotations

import argparse
import time
from typing import Any
from urllib.parse import quote

from rich.table import Table
from rich.text import Text

from cli.ops.client import ApiClient, ApiFailure, Exit
from cli.ops.render import (
    Output,
    age,
    cell,
    new_table,
    status_cell,
    when,
)
from cli.ops.wait import DEFAULT_WAIT_S, watch

PAGE_SIZE = 1000


def host_path(host_id: str) -> str:
    """The API path of a host, its id escaped."""
    return "/hosts/" + quote(host_id, safe="")


def cmd_hosts_list(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """List hosts, following pages until ``--limit`` (default: all)."""
    autorecovery = {"on": "true", "off": "false"}.get(args.autorecovery or "")
    hosts: list[dict[str, Any]] = []
    after = args.after
    while True:
        want = PAGE_SIZE if args.limit is None else min(PAGE_SIZE, args.limit - len(hosts))
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
        hosts.extend(page["hosts"])
        after = page.get("next_after")
        if after is None or (args.limit is not None and len(hosts) >= args.limit):
            break
    if out.json_mode:
        out.data({"hosts": hosts, "next_after": after})
        return Exit.OK
    table = new_table(
        "HOST", "CLUSTER", "STATUS", "REASON", "AUTORECOVERY", "REPORT AGE", "ACTIVATING", "LAST DECISION"
    )
    counts: dict[str, int] = {}
    for h in hosts:
        counts[h["status"]] = counts.get(h["status"], 0) + 1
        table.add_row(
            cell(h["id"]),
            cell(h["cluster"]),
            status_cell(h["status"]),
            cell(h.get("reason")),
            cell("on" if h["autorecovery"] else "off"),
            age(h.get("report_age_s")),
            cell("yes" if h.get("in_flight") else ""),
            cell(h.get("last_decision")),
        )
    out.out.print(table)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    more = f"; more after {after} (--after {after})" if after else ""
    out.say(f"{len(hosts)} host(s)" + (f": {summary}" if summary else "") + more)
    return Exit.OK


def _activation_line(a: dict[str, Any]) -> Text:
    fence = f", fence {a['fence']}" if a.get("fence") is not None else ""
    outcome = f": {a['outcome']}" if a.get("outcome") else ""
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
        grid.add_row("last decision", cell(f"{last['code']}: {last.get('detail') or ''}{at}"))
    why = h.get("why_not_recovered")
    if why:
        grid.add_row("why not up", cell(f"{why.get('code')}: {why.get('detail') or ''}"))
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
    return Exit.OK


def _hold_lines(h: dict[str, Any]) -> list[tuple[str, str]]:
    """One line per hold in force now (``held_by``), with the command that lifts it."""
    lifts = {
        "quarantine": " (clear it with `autorecovery hosts quarantine-clear ID`)",
        "backoff": " (retry now with `autorecovery hosts backoff-reset ID`)",
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
    if state == "succeeded" or host.get("status") == "up":
        out.say(Text("✓ ", style="green"), (host_id, "bold"), " is up")
        return Exit.OK
    why = record.get("outcome") or state
    detail = f" ({record['detail']})" if record.get("detail") else ""
    reason = f" {host['reason']}" if host.get("reason") else ""
    raise ApiFailure(
        Exit.FAILED,
        f"{host_id} is not up: activation {state}, {why}{detail}; the host is {host.get('status')}{reason}",
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
