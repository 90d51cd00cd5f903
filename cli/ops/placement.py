"""``autorecovery placement`` and ``autorecovery vm-runs report``: the ranking and what feeds it."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from rich.text import Text

from cli.ops.client import ApiClient, Exit
from cli.ops.render import Output, cell, new_table, when


def explain(terms: dict[str, float]) -> str:
    """A score's terms in one line, e.g. ``free_memory +29.3, vms_running -1, recent_charges -20``."""
    return ", ".join(f"{name} {value:+g}" for name, value in terms.items())


def cmd_placement(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Rank a cluster's up hosts best first for the next VM, each score explained."""
    body = api.call("GET", "/clusters/" + quote(args.cluster, safe="") + "/placement")
    if out.json_mode:
        out.data(body)
        return Exit.OK
    hosts = body["hosts"]
    if not hosts:
        out.say(f"no host of {body['cluster']} is up to take a VM")
        return Exit.OK
    table = new_table("RANK", "HOST", "SCORE", "VMS", "FREE MEM", "CHARGES", "WHY")
    for rank, h in enumerate(hosts, start=1):
        charges = h["recent_charges"]
        table.add_row(
            cell(rank),
            cell(h["host_id"]),
            cell(f"{h['score']:g}"),
            cell(h["vms_running"]),
            cell(f"{h['mem_free_mb'] / 1024:.1f} GiB"),
            Text(str(charges), style="yellow" if charges else ""),
            cell(explain(h["terms"])),
        )
    out.out.print(table)
    out.say(
        f"{len(hosts)} up host(s) of {body['cluster']}, best first; the score is the sum of its terms. "
        "Hosts in error or otherwise not up are left out."
    )
    return Exit.OK


def attempt_spec(text: str) -> dict[str, Any]:
    """Parse ``HOST:ok``, ``HOST:failed`` or ``HOST:failed:ERROR`` into an attempt of ``POST /vm-runs``.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    host, sep, rest = text.partition(":")
    outcome, _, error = rest.partition(":")
    if not host or not sep or outcome not in ("ok", "failed"):
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:ok, HOST:failed or HOST:failed:ERROR")
    if outcome == "ok":
        if error:
            raise argparse.ArgumentTypeError(f"{text!r}: an attempt that started the VM has no error")
        return {"host": host, "ok": True, "error": None}
    return {"host": host, "ok": False, "error": error or None}


def cmd_vm_runs_report(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Report a VM's placement attempts, in order; say which hosts were charged or put in error."""
    answer = api.call("POST", "/vm-runs", body={"vm_id": args.vm, "attempts": args.attempts})
    if out.json_mode:
        out.data(answer)
        return Exit.OK
    out.say(f"VM run {answer['vm_run']} of {answer['vm_id']} recorded")
    charged: dict[str, int] = answer.get("charged") or {}
    if not charged:
        out.say("no host charged (a VM that failed everywhere, or only where it started, charges nobody)")
    for host_id, n in sorted(charged.items()):
        out.say(f"charged {host_id}: {n} charge(s) within the window")
    for host_id in answer.get("errored") or []:
        out.say(
            (f"{host_id} is now in error", "bold magenta"),
            f" until {when(answer.get('error_until'))}: its VMs keep failing and starting elsewhere",
        )
    return Exit.OK
