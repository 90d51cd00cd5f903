"""``hosts add|import|delete`` and ``clusters add|list|delete``: bring a fleet in, take it apart.

``hosts import`` reads a CSV (header ``id,cluster,agent_url[,adopt]``), a JSON list (or
``{"hosts": [...]}``) or JSON Lines file, checks every line here and then with the API (a dry
run: ids taken, unknown clusters), and lists every bad line with its number; nothing is written
while any line is bad. Then it registers the hosts in batches, each one transaction, with
progress on stderr.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from cli.ops.client import ApiClient, ApiFailure, Exit
from cli.ops.hosts import host_path
from cli.ops.render import Output, cell, new_table

#: Hosts per API call of an import (the API takes up to 5,000 in one transaction).
BATCH = 1000
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


class Line:
    """One host of an import file: where it was, and what it said."""

    def __init__(self, number: int, data: dict[str, Any]) -> None:
        self.number = number
        self.data = data


def read_lines(path: Path) -> list[Line]:
    """Read an import file as numbered entries (CSV rows, JSON items or JSON Lines lines).

    Raises:
        ApiFailure: exit 2 when the file cannot be read or is not CSV/JSON at all.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ApiFailure(
            Exit.USAGE, f"cannot read {path}: {exc}", "check the file's path and encoding"
        ) from exc
    if path.suffix.lower() == ".csv":
        return _csv_lines(text)
    if path.suffix.lower() == ".jsonl":
        return [Line(n, _json_object(raw)) for n, raw in enumerate(text.splitlines(), 1) if raw.strip()]
    if path.suffix.lower() != ".json":
        raise ApiFailure(Exit.USAGE, f"{path}: unknown format", "name the file .csv, .json or .jsonl")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ApiFailure(Exit.USAGE, f"{path}: not valid JSON ({exc})", "fix the file") from exc
    items = data.get("hosts") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ApiFailure(
            Exit.USAGE, f"{path}: expected a list of hosts", 'give [{"id": ...}] or {"hosts": [...]}'
        )
    return [Line(n, item if isinstance(item, dict) else {"_": item}) for n, item in enumerate(items, 1)]


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_": "not JSON"}
    return value if isinstance(value, dict) else {"_": value}


def _csv_lines(text: str) -> list[Line]:
    reader = csv.DictReader(text.splitlines())
    lines = []
    for row in reader:
        extra = row.pop(None, None)
        data: dict[str, Any] = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if extra:
            data["_"] = "more fields than the header names"
        lines.append(Line(reader.line_num, data))
    return lines


def check_line(line: Line, adopt: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """Turn an entry into the API's host body, or say everything wrong with it."""
    data, problems = line.data, []
    if "_" in data:
        return None, ["must be an object with id, cluster and agent_url"]
    for name in sorted(set(data) - {"id", "cluster", "agent_url", "adopt"}):
        problems.append(f"{name}: is not a known field")
    for name in ("id", "cluster"):
        if not isinstance(data.get(name), str) or not _ID.fullmatch(data[name]):
            problems.append(f"{name}: must be 1-128 characters of A-Z a-z 0-9 . _ -")
    url = data.get("agent_url")
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).hostname
    ):
        problems.append("agent_url: must be an http(s) URL with a host")
    flag = data.get("adopt")
    if flag is None or flag == "":  # no column, or left empty: the command's --adopt
        flag = adopt
    if isinstance(flag, str):
        flag = True if flag.lower() in _TRUE else False if flag.lower() in _FALSE else None
    if not isinstance(flag, bool):
        problems.append("adopt: must be true or false")
    if problems:
        return None, problems
    return {"id": data["id"], "cluster": data["cluster"], "agent_url": url, "adopt": flag}, []


def _batches(items: list[Any]) -> Iterator[tuple[int, list[Any]]]:
    for start in range(0, len(items), BATCH):
        yield start, items[start : start + BATCH]


def _api_problems(exc: ApiFailure, start: int, lines: list[Line]) -> list[tuple[int, str]] | None:
    """Map the API's ``hosts[i].field`` errors of a batch to file line numbers, or None."""
    errors = exc.body.get("errors") if exc.exit_code == Exit.USAGE else None
    if not isinstance(errors, list) or not errors:
        return None
    found = []
    for err in errors:
        match = re.match(r"hosts\[(\d+)\]\.?(.*)", str(err.get("field", "")))
        if match is None:
            return None
        index = start + int(match.group(1))
        found.append((lines[index].number, f"{match.group(2) or 'host'}: {err.get('message')}"))
    return found


def cmd_hosts_import(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Register every host of a file, or none: all bad lines are listed first."""
    lines = read_lines(Path(args.file))
    if not lines:
        raise ApiFailure(Exit.USAGE, f"{args.file}: no hosts in the file", None)
    bodies = _checked_bodies(api, args, lines, out)
    created = _register_all(api, bodies, out)
    if out.json_mode:
        out.data({"created": created})
    else:
        adopted = sum(b["adopt"] for b in bodies)
        out.say(f"{len(created)} host(s) registered ({adopted} adopted); unassigned until their first report")
    return Exit.OK


def _checked_bodies(
    api: ApiClient, args: argparse.Namespace, lines: list[Line], out: Output
) -> list[dict[str, Any]]:
    """The file's hosts as API bodies, once every line passed our check and the API's dry run."""
    bodies: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    for line in lines:
        body, problems = check_line(line, args.adopt)
        bad += [(line.number, p) for p in problems]
        if body is not None:
            bodies.append(body)
    if not bad:  # the API's own check: ids taken, unknown clusters, ids listed twice
        for start, chunk in _batches(bodies):
            try:
                api.call("POST", "/hosts/batch", body={"hosts": chunk, "dry_run": True})
            except ApiFailure as exc:
                mapped = _api_problems(exc, start, lines)
                if mapped is None:
                    raise
                bad += mapped
    if bad:
        for number, problem in sorted(bad):
            out.err.print(f"{args.file}:{number}: {problem}", soft_wrap=True, markup=False)
        raise ApiFailure(
            Exit.USAGE,
            f"{len({n for n, _ in bad})} bad line(s) in {args.file}; nothing was registered",
            "fix every line listed above and import the file again",
        )
    return bodies


def _register_all(api: ApiClient, bodies: list[dict[str, Any]], out: Output) -> list[str]:
    """Register checked hosts batch by batch, showing progress on long imports."""
    created: list[str] = []
    for _, chunk in _batches(bodies):
        try:
            answer = api.call("POST", "/hosts/batch", body={"hosts": chunk})
        except ApiFailure as exc:
            exc.message += f" ({len(created)} of {len(bodies)} host(s) were registered before this batch)"
            raise
        created += answer["created"]
        if len(bodies) > BATCH:
            out.progress_line(cell(f"registered {len(created)}/{len(bodies)} host(s)"))
    return created


def cmd_hosts_add(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Register one host."""
    body = {"id": args.host_id, "cluster": args.cluster, "agent_url": args.agent_url, "adopt": args.adopt}
    answer = api.call("POST", "/hosts", body=body)
    if out.json_mode:
        out.data(answer)
    else:
        how = "adopted: up from its first clean report, no init" if args.adopt else "activated once healthy"
        out.say(
            f"{args.host_id}: registered in {args.cluster}; {answer['status']} until its first report ({how})"
        )
    return Exit.OK


def cmd_hosts_delete(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Forget a host (its audit entries stay)."""
    api.call("DELETE", host_path(args.host_id))
    if out.json_mode:
        out.data({"deleted": args.host_id})
    else:
        out.say(f"{args.host_id}: deleted")
    return Exit.OK


def cluster_body(args: argparse.Namespace) -> dict[str, Any]:
    """The cluster to send: from ``--file`` (JSON), or from the flags."""
    if args.file:
        try:
            body = json.loads(Path(args.file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ApiFailure(Exit.USAGE, f"cannot read {args.file}: {exc}", "give a JSON object") from exc
        if not isinstance(body, dict):
            raise ApiFailure(Exit.USAGE, f"{args.file}: expected a JSON object", None)
        if args.cluster_id and body.setdefault("id", args.cluster_id) != args.cluster_id:
            raise ApiFailure(
                Exit.USAGE, f"{args.file} names cluster {body['id']!r}, not {args.cluster_id!r}", None
            )
        return body
    if not args.cluster_id:
        raise ApiFailure(Exit.USAGE, "give the cluster's ID, or --file", None)
    body = {
        "id": args.cluster_id,
        "required_networks": args.networks or [],
        "storage_domains": args.storage_domains or [],
        "cpu_flags": args.cpu_flags or [],
    }
    if args.min_version:
        body["min_version"] = args.min_version
    return body


def cmd_clusters_add(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Create a cluster, or replace its requirements."""
    answer = api.call("POST", "/clusters", body=cluster_body(args))
    if out.json_mode:
        out.data(answer)
    else:
        out.say(f"cluster {answer['id']}: saved")
    return Exit.OK


def cmd_clusters_list(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """List clusters and their requirements."""
    clusters = api.call("GET", "/clusters")
    if out.json_mode:
        out.data(clusters)
        return Exit.OK
    table = new_table("CLUSTER", "NETWORKS", "STORAGE DOMAINS", "MIN VERSION", "CPU FLAGS")
    for c in clusters:
        table.add_row(
            cell(c["id"]),
            cell(", ".join(c["required_networks"])),
            cell(", ".join(c["storage_domains"])),
            cell(c["min_version"]),
            cell(", ".join(c["cpu_flags"])),
        )
    out.out.print(table)
    return Exit.OK


def cmd_clusters_delete(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Delete a cluster with no host."""
    api.call("DELETE", "/clusters/" + quote(args.cluster_id, safe=""))
    if out.json_mode:
        out.data({"deleted": args.cluster_id})
    else:
        out.say(f"cluster {args.cluster_id}: deleted")
    return Exit.OK
