"""``autorecovery audit``: the audit log, newest first."""

from __future__ import annotations

import argparse
import json
import re
from datetime import UTC, datetime, timedelta

from cli.ops.client import ApiClient, Exit
from cli.ops.render import Output, cell, new_table, when

_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since_value(value: str, now: datetime | None = None) -> str:
    """Turn ``30m``, ``2h``, ``1d`` into an RFC 3339 time that long ago; pass anything else on."""
    match = _RELATIVE.fullmatch(value.strip())
    if not match:
        return value
    ago = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return ((now or datetime.now(UTC)) - ago).isoformat().replace("+00:00", "Z")


def cmd_audit(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Show audit entries, newest first."""
    page = api.call(
        "GET",
        "/audit",
        params={
            "object_type": "host" if args.host else "storage_domain" if args.storage_domain else None,
            "object_id": args.host or args.storage_domain,
            "actor": args.actor,
            "event": args.event,
            "since": since_value(args.since) if args.since else None,
            "limit": args.limit,
            "before": args.before,
        },
    )
    if out.json_mode:
        out.data(page)
        return Exit.OK
    table = new_table("ID", "AT", "OBJECT", "EVENT", "ACTOR", "REASON", "DETAILS")
    for e in page["entries"]:
        details = json.dumps(e.get("details") or {}, separators=(",", ":"))
        table.add_row(
            cell(e["id"]),
            when(e["at"]),
            cell(f"{e['object_type']} {e['object_id']}"),
            cell(e["event"]),
            cell(e["actor"]),
            cell(e.get("reason")),
            cell(details),
        )
    out.out.print(table)
    if page.get("next_before"):
        out.say(f"older entries: --before {page['next_before']}")
    return Exit.OK
