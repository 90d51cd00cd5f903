"""``autorecovery storage-domains …``: list, show, activate (and follow), autorecovery, maintenance."""

from __future__ import annotations

import argparse
import time
from typing import Any
from urllib.parse import quote

from rich.table import Table
from rich.text import Text

from cli.ops.client import ApiClient, ApiFailure, Exit
from cli.ops.render import Output, cell, new_table, status_cell, when
from cli.ops.wait import DEFAULT_WAIT_S, watch


def domain_path(sd_id: str) -> str:
    """The API path of a storage domain, its id escaped."""
    return "/storage-domains/" + quote(sd_id, safe="")


def cmd_domains_list(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """List storage domains with their status and autorecovery flag."""
    body = api.call("GET", "/storage-domains")
    if out.json_mode:
        out.data(body)
        return Exit.OK
    domains = body["storage_domains"]
    table = new_table("DOMAIN", "STATUS", "AUTORECOVERY", "LAST SEEN", "STATUS SINCE", "DETAIL")
    counts: dict[str, int] = {}
    for d in domains:
        counts[d["status"]] = counts.get(d["status"], 0) + 1
        table.add_row(
            cell(d["id"]),
            status_cell(d["status"]),
            cell("on" if d["autorecovery"] else "off"),
            when(d.get("last_seen_at")),
            when(d.get("status_changed_at")),
            cell(d.get("detail")),
        )
    out.out.print(table)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    out.say(f"{len(domains)} storage domain(s)" + (f": {summary}" if summary else ""))
    return Exit.OK


def _activation_line(a: dict[str, Any]) -> Text:
    fence = f", fence {a['fence']}" if a.get("fence") is not None else ""
    return Text(f"{a['id']} {a['state']} — {a['trigger']} by {a['actor']}{fence}")


def cmd_domains_show(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Show a storage domain: status and why, clusters, flag, the activation in flight."""
    d = api.call("GET", domain_path(args.sd_id))
    if out.json_mode:
        out.data(d)
        return Exit.OK
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    detail = f"  {d['detail']}" if d.get("detail") else ""
    grid.add_row("domain", Text.assemble(Text(d["id"], style="bold"), "  ", status_cell(d["status"]), detail))
    grid.add_row("clusters", cell(", ".join(d.get("clusters") or [])))
    grid.add_row(
        "autorecovery",
        cell("on" if d["autorecovery"] else "off (only `storage-domains activate` brings it back)"),
    )
    grid.add_row("status since", when(d.get("status_changed_at")))
    grid.add_row("last seen", when(d.get("last_seen_at")))
    running = d.get("activation")
    grid.add_row("activation", _activation_line(running) if running else cell("none running"))
    out.out.print(grid)
    if d["status"] == "maintenance":
        out.say(f"in maintenance: bring it back with `autorecovery storage-domains activate {d['id']}`")
    return Exit.OK


def cmd_domains_activate(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Ask for a storage domain's activation; with ``--wait``, follow it until it ends."""
    if args.timeout is not None and not args.wait:
        raise ApiFailure(Exit.USAGE, "--timeout only applies with --wait", "add --wait")
    started = time.monotonic()
    answer = api.call("POST", domain_path(args.sd_id) + "/activate")
    if not args.wait:
        if out.json_mode:
            out.data(answer)
        else:
            sd_id = answer["storage_domain_id"]
            out.say(
                f"activation {answer['activation_id']} of storage domain {sd_id} queued "
                f"(Celery task id {answer['task_id']})"
            )
            out.say(f"follow it with `autorecovery storage-domains show {sd_id}`, or use --wait next time")
        return Exit.OK
    timeout_s = DEFAULT_WAIT_S if args.timeout is None else args.timeout
    return wait_for_domain(api, out, answer, started + timeout_s, timeout_s)


def _failure_detail(api: ApiClient, sd_id: str, activation_id: str) -> str | None:
    """Why an ended activation failed, from its audit entry (None when there is none)."""
    page = api.call(
        "GET",
        "/audit",
        params={
            "object_type": "storage_domain",
            "object_id": sd_id,
            "event": "activation_failed",
            "limit": 20,
        },
    )
    for entry in page.get("entries") or []:
        details = entry.get("details") or {}
        if details.get("activation_id") == activation_id:
            return str(details.get("detail") or "") or None
    return None


def wait_for_domain(
    api: ApiClient, out: Output, answer: dict[str, Any], deadline: float, timeout_s: float
) -> int:
    """Poll the domain until the activation ends; exit 0 when it is active, 1 if not, 3 on timeout.

    The domain shows its activation only while it is queued or running; once it has ended, the
    domain's status says how: it is active when the activation succeeded.
    """
    sd_id, activation_id = answer["storage_domain_id"], answer["activation_id"]
    record: dict[str, Any] = {"id": activation_id, "state": answer.get("state", "queued")}
    domain: dict[str, Any] = {}

    def look() -> tuple[str, str]:
        nonlocal domain, record
        domain = api.call("GET", domain_path(sd_id))
        running = domain.get("activation")
        if running and running.get("id") == activation_id:
            record = dict(running)
        else:
            record = {**record, "state": "done" if domain.get("status") == "active" else "failed"}
        return str(record["state"]), f"domain {domain.get('status')}"

    label = Text.assemble((sd_id, "bold"), f": activation {activation_id}")
    try:
        state = watch(out, label, look, deadline)
    except KeyboardInterrupt:
        follow = f"`autorecovery storage-domains show {sd_id}`"
        out.err.print(f"stopped waiting; activation {activation_id} goes on: {follow}")
        return 130
    if out.json_mode:
        out.data({"activation": record, "storage_domain": domain})
    if state is None:
        raise ApiFailure(
            Exit.TIMEOUT,
            f"activation {activation_id} of {sd_id} is still {record.get('state')} after {timeout_s:g}s",
            "it goes on without us: follow it with "
            f"`autorecovery storage-domains show {sd_id}`, or wait longer with --timeout",
        )
    if state == "done":
        out.say(Text("✓ ", style="green"), (sd_id, "bold"), " is active")
        return Exit.OK
    why = _failure_detail(api, sd_id, activation_id)
    raise ApiFailure(
        Exit.FAILED,
        f"{sd_id} is not active: activation failed{f' ({why})' if why else ''}; "
        f"the domain is {domain.get('status')}",
        f"see `autorecovery storage-domains show {sd_id}` and `autorecovery audit --storage-domain {sd_id}`",
    )


def cmd_domains_autorecovery(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Turn a storage domain's automatic reactivation on or off."""
    answer = api.call("PUT", domain_path(args.sd_id) + "/autorecovery", body={"enabled": args.state == "on"})
    if out.json_mode:
        out.data(answer)
    elif args.state == "on":
        out.say(f"{args.sd_id}: autorecovery on (reactivated once monitoring shows it reachable again)")
    else:
        out.say(
            f"{args.sd_id}: autorecovery off (only `autorecovery storage-domains activate "
            f"{args.sd_id}` brings it back)"
        )
    return Exit.OK


def cmd_domains_maintenance(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Put a storage domain in maintenance; only an admin's activation takes it out."""
    body = {"reason": args.reason} if args.reason else {}
    answer = api.call("POST", domain_path(args.sd_id) + "/maintenance", body=body)
    if out.json_mode:
        out.data(answer)
    else:
        out.say(
            f"{args.sd_id} is in maintenance ({answer.get('detail')}); monitoring leaves it alone; bring "
            f"it back with `autorecovery storage-domains activate {args.sd_id}`"
        )
    return Exit.OK
