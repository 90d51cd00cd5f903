"""``hosts add|import|delete`` and ``clusters add|list|delete``: bring a fleet in, take it apart.

``hosts import`` reads a CSV (header ``id,cluster,agent_url[,adopt]``), a JSON list (or
``{"hosts": [...]}``) or JSON Lines file, checks every line here and with the API (a dry run:
ids taken, unknown clusters) in one pass, and lists every bad line with its number; nothing is
written while any line is bad. Then it registers the hosts in batches, each one transaction,
with progress on stderr. ``--dry-run`` stops after the checks; ``--skip-existing`` leaves out
hosts registered already.
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
from models.agent_url import NO_CREDENTIALS

#: Hosts per API call of an import (the API takes up to 5,000 in one transaction).
BATCH = 1000
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: A CSV cell has no types: only these words are a boolean (``yes`` or ``1`` is refused, not guessed).
_CSV_BOOL = {"true": True, "false": False}
_INDEX = re.compile(r"hosts\[(\d+)\]")


class Line:
    """One host of an import file: where it was, and what it said.

    ``number`` counts from 1: the file's line for CSV (where the row starts) and JSON Lines, the
    entry's position in the list for a ``.json`` file (``unit`` says which).
    """

    def __init__(self, number: int, data: dict[str, Any], *, unit: str = "line", typed: bool = True) -> None:
        self.number = number
        self.data = data
        self.unit = unit
        #: False for CSV: every cell is text, so ``adopt`` is read from the words true/false.
        self.typed = typed

    def where(self, path: str) -> str:
        """Name the line as ``FILE:N`` (a file line) or ``FILE: record N`` (a JSON list's entry)."""
        return f"{path}:{self.number}" if self.unit == "line" else f"{path}: record {self.number}"

    def label(self) -> str:
        """Name the line within its file: ``line N`` or ``record N``."""
        return f"{self.unit} {self.number}"


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
    return [
        Line(n, item if isinstance(item, dict) else {"_": item}, unit="record")
        for n, item in enumerate(items, 1)
    ]


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {"_": "not JSON"}
    return value if isinstance(value, dict) else {"_": value}


def _csv_lines(text: str) -> list[Line]:
    reader = csv.DictReader(text.splitlines())
    lines = []
    if reader.fieldnames is None:  # reads the header
        return []
    ended = reader.line_num  # the header's last line
    for row in reader:
        # A row starts after the previous one ended and after the blank lines the reader skipped.
        started = ended + 1
        ended = reader.line_num
        extra = row.pop(None, None)
        data: dict[str, Any] = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        if extra:
            data["_"] = "more fields than the header names"
        lines.append(Line(_first_filled(text, started, ended), data, typed=False))
    return lines


def _first_filled(text: str, first: int, last: int) -> int:
    """The first line from ``first`` to ``last`` (1-based) that is not blank."""
    rows = text.splitlines()
    for number in range(first, last + 1):
        if rows[number - 1].strip():
            return number
    return last


def _url_problem(url: Any) -> str | None:
    """What is wrong with an entry's agent URL, or None."""
    if (
        not isinstance(url, str)
        or urlsplit(url).scheme not in ("http", "https")
        or not urlsplit(url).hostname
    ):
        return "must be an http(s) URL with a host"
    if "@" in urlsplit(url).netloc:
        return NO_CREDENTIALS
    return None


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
    url_problem = _url_problem(url)
    if url_problem is not None:
        problems.append(f"agent_url: {url_problem}")
    flag = data.get("adopt")
    if "adopt" not in data or (not line.typed and flag == ""):  # no column, or left empty: --adopt
        flag = adopt
    elif not line.typed and isinstance(flag, str):
        flag = _CSV_BOOL.get(flag.lower(), flag)
    if not isinstance(flag, bool):
        problems.append(f"adopt: must be true or false, not {json.dumps(flag)}")
    if problems:
        return None, problems
    return {"id": data["id"], "cluster": data["cluster"], "agent_url": url, "adopt": flag}, []


def _batches(items: list[Any]) -> Iterator[tuple[int, list[Any]]]:
    for start in range(0, len(items), BATCH):
        yield start, items[start : start + BATCH]


class ApiProblem:
    """One problem the API found in a batch, moved from its ``hosts[i]`` index to the file's line."""

    def __init__(self, line: Line, field: str, code: str, message: str) -> None:
        self.line = line
        self.field = field
        self.code = code
        self.message = message


def api_problems(exc: ApiFailure, chunk: list[tuple[Line, dict[str, Any]]]) -> list[ApiProblem] | None:
    """Map the API's ``hosts[i].field`` errors of a batch to the lines they came from, or None.

    A message that names another entry of the batch (``also hosts[3]``) names its line instead:
    the API counts from 0 within the batch, the operator reads the file.
    """
    errors = exc.body.get("errors") if exc.exit_code == Exit.USAGE else None
    if not isinstance(errors, list) or not errors:
        return None
    found = []
    for err in errors:
        match = re.match(r"hosts\[(\d+)\]\.?(.*)", str(err.get("field", "")))
        if match is None or int(match.group(1)) >= len(chunk):
            return None

        def line_of(m: re.Match[str]) -> str:
            index = int(m.group(1))
            return chunk[index][0].label() if index < len(chunk) else m.group(0)

        message = _INDEX.sub(line_of, str(err.get("message")))
        line = chunk[int(match.group(1))][0]
        found.append(ApiProblem(line, match.group(2) or "host", str(err.get("code")), message))
    return found


def cmd_hosts_import(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Register every host of a file, or none: all bad lines are listed first.

    ``--dry-run`` stops after the checks; ``--skip-existing`` leaves out hosts registered already
    (the rest of an import that stopped half way).
    """
    lines = read_lines(Path(args.file))
    if not lines:
        raise ApiFailure(Exit.USAGE, f"{args.file}: no hosts in the file", None)
    todo, skipped = _checked(api, args, lines, out)
    bodies = [body for _, body in todo]
    adopted = sum(b["adopt"] for b in bodies)
    skip_note = f"; {len(skipped)} already registered, skipped" if skipped else ""
    if args.dry_run:
        if out.json_mode:
            out.data({"dry_run": True, "hosts": len(bodies), "skipped": skipped, "created": []})
        else:
            out.say(
                f"{args.file}: every line is good; {len(bodies)} host(s) would be registered "
                f"({adopted} adopted){skip_note}; nothing was written (--dry-run)"
            )
        return Exit.OK
    created = _register_all(api, todo, args, out)
    if out.json_mode:
        out.data({"dry_run": False, "hosts": len(bodies), "skipped": skipped, "created": created})
    else:
        out.say(
            f"{len(created)} host(s) registered ({adopted} adopted){skip_note}; "
            "unassigned until their first report"
        )
    return Exit.OK


def _local_check(
    lines: list[Line], adopt: bool
) -> tuple[list[tuple[Line, dict[str, Any]]], list[tuple[Line, str]]]:
    """Our check of every line (fields, ids, URLs, ids listed twice): the good ones and the problems."""
    good: list[tuple[Line, dict[str, Any]]] = []
    bad: list[tuple[Line, str]] = []
    first: dict[str, Line] = {}
    for line in lines:
        body, problems = check_line(line, adopt)
        bad += [(line, p) for p in problems]
        if body is None:
            continue
        if body["id"] in first:
            bad.append((line, f"id: is listed twice (also {first[body['id']].label()})"))
            continue
        first[body["id"]] = line
        good.append((line, body))
    return good, bad


def _checked(
    api: ApiClient, args: argparse.Namespace, lines: list[Line], out: Output
) -> tuple[list[tuple[Line, dict[str, Any]]], list[str]]:
    """The hosts to register and the ids skipped, once every line passed both checks.

    Our check (fields, ids, URLs, ids listed twice) and the API's dry run (ids taken, unknown
    clusters) run in the same pass, so every bad line is listed at once.

    Raises:
        ApiFailure: exit 2 when any line is bad, after listing them all on stderr.
    """
    good, bad = _local_check(lines, args.adopt)
    skipped: set[int] = set()
    for _, chunk in _batches(good):  # the API's own check, on every line that passed ours
        try:
            api.call("POST", "/hosts/batch", body={"hosts": [b for _, b in chunk], "dry_run": True})
        except ApiFailure as exc:
            found = api_problems(exc, chunk)
            if found is None:
                raise
            for found_one in found:
                if found_one.code == "taken" and args.skip_existing:
                    skipped.add(id(found_one.line))
                else:
                    bad.append((found_one.line, f"{found_one.field}: {found_one.message}"))
    if bad:
        for line, text in sorted(bad, key=lambda item: item[0].number):
            out.err.print(f"{line.where(args.file)}: {text}", soft_wrap=True, markup=False)
        unit = lines[0].unit
        hint = "fix every line listed above and import the file again"
        if any("is already registered" in p for _, p in bad):
            hint += "; --skip-existing leaves out the hosts registered already"
        raise ApiFailure(
            Exit.USAGE,
            f"{len({id(line) for line, _ in bad})} bad {unit}(s) in {args.file} "
            f"({unit}s counted from 1); nothing was registered",
            hint,
        )
    todo = [(line, body) for line, body in good if id(line) not in skipped]
    return todo, [body["id"] for line, body in good if id(line) in skipped]


def _register_all(
    api: ApiClient, todo: list[tuple[Line, dict[str, Any]]], args: argparse.Namespace, out: Output
) -> list[str]:
    """Register checked hosts batch by batch, showing progress on long imports."""
    created: list[str] = []
    for _, chunk in _batches(todo):
        try:
            answer = api.call("POST", "/hosts/batch", body={"hosts": [b for _, b in chunk]})
        except ApiFailure as exc:
            found = api_problems(exc, chunk) or []
            if found:
                exc.message = "; ".join(
                    f"{p.line.where(args.file)}: {p.field}: {p.message}" for p in found[:5]
                ) + ("; ..." if len(found) > 5 else "")
            exc.message += f" ({len(created)} of {len(todo)} host(s) were registered before this batch)"
            exc.hint = "import the file again with --skip-existing to register the rest"
            raise
        created += answer["created"]
        if len(todo) > BATCH:
            out.progress_line(cell(f"registered {len(created)}/{len(todo)} host(s)"))
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
    status, answer = api.send("POST", "/clusters", body=cluster_body(args))
    if out.json_mode:
        out.data(answer)
    elif status == 201:
        out.say(f"cluster {answer['id']}: created")
    else:  # 200: it existed, and its requirements are now these
        out.say(f"cluster {answer['id']}: replaced (its requirements are now the ones given)")
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
