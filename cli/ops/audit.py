"""``autorecovery audit``: the audit log, newest first; its event names; following it as it grows."""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.text import Text

from cli.ops.client import ApiClient, Exit
from cli.ops.hosts import host_path
from cli.ops.render import Output, cell, new_table, when
from cli.ops.storage import domain_path
from models.audit_events import AUDIT_EVENTS

#: Entries per call while following.
FOLLOW_PAGE = 200

_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since_value(value: str, now: datetime | None = None) -> str:
    """Turn ``30m``, ``2h``, ``1d`` into an RFC 3339 time that long ago; pass anything else on."""
    match = _RELATIVE.fullmatch(value.strip())
    if not match:
        return value
    ago = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return ((now or datetime.now(UTC)) - ago).isoformat().replace("+00:00", "Z")


def details_text(details: dict[str, Any] | None) -> str:
    """Audit details for people: ``key=value`` pairs that wrap between pairs, not inside words."""
    parts = []
    for key, value in (details or {}).items():
        if isinstance(value, str):
            text = value if value and not re.search(r"[\s\"=]", value) else json.dumps(value)
        elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
            text = ",".join(str(v) for v in value) or "[]"
        elif value is None or isinstance(value, bool | int | float):
            text = json.dumps(value)
        else:
            text = json.dumps(value, separators=(", ", ": "))
        parts.append(f"{key}={text}")
    return " ".join(parts)


def _params(args: argparse.Namespace, limit: int, before: int | None) -> dict[str, Any]:
    return {
        "object_type": "host" if args.host else "storage_domain" if args.storage_domain else None,
        "object_id": args.host or args.storage_domain,
        "actor": args.actor,
        "event": args.event,
        "since": since_value(args.since) if args.since else None,
        "limit": limit,
        "before": before,
    }


def cmd_audit(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Show audit entries, newest first; ``--events`` lists the event names; ``--follow`` tails."""
    if args.events:
        return _list_events(out)
    if args.follow is not None:
        return _follow(api, args, out)
    page = api.call("GET", "/audit", params=_params(args, args.limit, args.before))
    if not page["entries"]:
        _check_object(api, args)
    if out.json_mode:
        out.data(page)
        return Exit.OK
    table = new_table("ID", "AT", "OBJECT", "EVENT", "ACTOR", "REASON", "DETAILS")
    for e in page["entries"]:
        table.add_row(
            cell(e["id"]),
            when(e["at"]),
            cell(f"{e['object_type']} {e['object_id']}"),
            cell(e["event"]),
            cell(e["actor"]),
            cell(e.get("reason")),
            cell(details_text(e.get("details"))),
        )
    out.out.print(table)
    if page.get("next_before"):
        out.say(f"older entries: --before {page['next_before']}")
    return Exit.OK


def _check_object(api: ApiClient, args: argparse.Namespace) -> None:
    """After an empty page about one object and nothing else: that object must exist.

    Every host and storage domain has entries from its registration on (a deleted host keeps
    them), so no entry at all means a wrong id: an error naming it, not an empty table.

    Raises:
        ApiFailure: exit 4 (the API's 404) when the host or storage domain is unknown.
    """
    if any((args.actor, args.event, args.since, args.before)):
        return  # other filters may rightly leave nothing
    if args.host:
        api.call("GET", host_path(args.host))
    elif args.storage_domain:
        api.call("GET", domain_path(args.storage_domain))


def _list_events(out: Output) -> int:
    """Every audit event name, one line each with what it means (from ``models.audit_events``)."""
    if out.json_mode:
        out.data(dict(AUDIT_EVENTS))
        return Exit.OK
    width = max(len(name) for name in AUDIT_EVENTS)
    for name, meaning in AUDIT_EVENTS.items():
        out.say(f"{name:<{width}}  {meaning}")
    return Exit.OK


def _entry_line(e: dict[str, Any]) -> Text:
    reason = f" ({e['reason']})" if e.get("reason") else ""
    details = details_text(e.get("details"))
    return Text.assemble(
        str(when(e["at"])),
        f"  #{e['id']}  {e['object_type']} {e['object_id']}  ",
        (e["event"], "bold"),
        f" by {e['actor']}{reason}",
        f"  {details}" if details else "",
    )


def _newer(api: ApiClient, args: argparse.Namespace, after_id: int) -> list[dict[str, Any]]:
    """Entries above ``after_id`` matching the filters, oldest first (every page down to it)."""
    found: list[dict[str, Any]] = []
    before = None
    while True:
        page = api.call("GET", "/audit", params=_params(args, FOLLOW_PAGE, before))
        fresh = [e for e in page["entries"] if e["id"] > after_id]
        found += fresh
        before = page.get("next_before")
        if len(fresh) < len(page["entries"]) or before is None or after_id == 0:
            return sorted(found, key=lambda e: int(e["id"]))


def _follow(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Print the last ``--limit`` entries, then each new one as it is written, until Ctrl-C (exit 0)."""
    first = api.call("GET", "/audit", params=_params(args, args.limit, None))["entries"]
    seen = max((int(e["id"]) for e in first), default=0)
    shown = sorted(first, key=lambda e: int(e["id"]))
    rounds = 0
    try:
        while True:
            for e in shown:
                if out.json_mode:
                    out.data(e)
                else:
                    out.out.print(_entry_line(e), soft_wrap=True)
            rounds += 1
            if args.follow_count is not None and rounds >= args.follow_count:
                return Exit.OK
            time.sleep(args.follow)
            shown = _newer(api, args, seen)
            seen = max([seen, *(int(e["id"]) for e in shown)])
    except KeyboardInterrupt:
        return Exit.OK
