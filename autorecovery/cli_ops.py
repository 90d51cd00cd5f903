"""Operator commands over the HTTP API: ``hosts …``, ``plan``, ``audit``, ``pause``, ``resume``
and ``safety``.

They call the API, never the database, so they work from any machine that reaches it. The URL
comes from ``--api-url`` or AUTORECOVERY_API_URL; the bearer token from ``--token`` or
AUTORECOVERY_TOKEN, else, for an API on loopback, the ``<data_dir>/admin-token`` file that
``autorecovery up`` writes. The token travels only in the Authorization header; it is never
printed. Tables are for people; ``--json`` prints the API's JSON on one line of stdout for
scripts. Progress and errors go to stderr; an error says what the API said and what to do.

Exit codes:
    0  done
    1  the operation failed: the activation ended and the host is not up; the API erred (5xx)
    2  usage or bad input: a wrong argument, or the API refused the input (400, 413, 422)
    3  timeout: ``activate --wait`` ran out of ``--timeout``, or the API did not answer in time
    4  not found (404): no such host or cluster; nothing to resume
    5  conflict (409): another activation holds the host, the host is already up, ...
    6  authentication (401: no or bad token) or permission (403: a viewer token on a write)
    7  unreachable: no answer from the API URL, or 502/503 (the API, or its PostgreSQL, Redis
       or broker, is down); nothing was done, retry later

One module (over the usual size) because its parts (API client, token resolution, rendering,
the commands, argparse wiring) change together with the API; split it along those lines (the
safety commands first) if it grows further.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autorecovery import __version__
from models.domain import HostStatus
from models.errors import AutorecoveryError, InvalidInput

API_PREFIX = "/api/v1"
REQUEST_TIMEOUT_S = 30.0
DEFAULT_WAIT_S = 120.0
PAGE_SIZE = 1000
#: Seconds between two looks at an activation while waiting (tests make it shorter).
POLL_S = 0.5
IN_FLIGHT = frozenset({"queued", "running"})
DEV_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name: ``autorecovery up`` writes it
_TOKEN_CHARS = re.compile(r"[!-~]+")
_RELATIVE = re.compile(r"(\d+)([smhd])")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_STATUS_STYLE = {
    "up": "green",
    "initializing": "cyan",
    "non_operational": "red",
    "non_responsive": "yellow",
    "error": "magenta",
    "maintenance": "blue",
    "succeeded": "green",
    "failed": "red",
    "skipped": "yellow",
    "abandoned": "red",
}


class Exit(IntEnum):
    """What the process's exit code means (see the module docstring)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    TIMEOUT = 3
    NOT_FOUND = 4
    CONFLICT = 5
    AUTH = 6
    UNREACHABLE = 7


class ApiFailure(AutorecoveryError):
    """An operator command that did not succeed: the message, what to do, the exit code."""

    def __init__(self, exit_code: Exit, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.hint = hint


def exit_code_for(status: int) -> Exit:
    """Map an HTTP error status to the exit code."""
    if status in (401, 403):
        return Exit.AUTH
    if status == 404:
        return Exit.NOT_FOUND
    if status == 409:
        return Exit.CONFLICT
    if status in (408, 504):
        return Exit.TIMEOUT
    if status in (502, 503):
        return Exit.UNREACHABLE
    return Exit.USAGE if 400 <= status < 500 else Exit.FAILED


def failure_from(response: httpx.Response, base_url: str) -> ApiFailure:
    """Turn an error answer into the API's message and a hint of what to do."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"message": f"HTTP {response.status_code}: {response.text[:200]}".strip()}
    status, code, field = response.status_code, body.get("error"), body.get("field")
    hints = {
        401: "give a token of the API's AUTORECOVERY_API_TOKENS with --token or AUTORECOVERY_TOKEN",
        403: "this needs an admin token",
        404: "check the id with `autorecovery hosts list`",
        503: f"retry later; {base_url}/readyz says which dependency is down",
    }
    hint = hints.get(status)
    if status == 404 and field == "cluster_id":
        hint = "check the cluster id"
    if code == "not_paused":
        hint = "nothing to resume; `autorecovery safety` lists the pauses in force"
    elif code == "activation_in_flight":
        holder = body.get("holder") or {}
        hint = f"follow it with `autorecovery hosts show {holder.get('host_id', 'ID')}`"
    elif code == "already_up":
        hint = "nothing to do"
    elif status in (400, 413, 422) and field:
        hint = f"fix {field} and try again"
    elif status >= 500 and hint is None:
        hint = "see the API's log"
    return ApiFailure(exit_code_for(status), str(body.get("message") or f"HTTP {status}"), hint)


class ApiClient:
    """JSON calls to ``<base_url>/api/v1``; every failure becomes an ApiFailure."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        headers = {"User-Agent": f"autorecovery-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX, headers=headers, timeout=timeout_s, transport=transport
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request; return its JSON (None for an empty answer).

        Raises:
            ApiFailure: the API refused, failed, or could not be reached in time.
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        where = f"{method} {API_PREFIX}{path}"
        try:
            response = self._http.request(method, path, params=query, json=body)
        except httpx.ConnectTimeout as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise ApiFailure(
                Exit.TIMEOUT,
                f"{where}: no answer within {self.timeout_s:.0f}s",
                "retry; the API or its database may be overloaded",
            ) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        if not response.is_success:
            raise failure_from(response, self.base_url)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiFailure(
                Exit.FAILED, f"{where}: the answer is not JSON", f"is {self.base_url} the autorecovery API?"
            ) from exc

    def _unreachable(self, exc: Exception) -> ApiFailure:
        return ApiFailure(
            Exit.UNREACHABLE,
            f"cannot reach the API at {self.base_url} ({type(exc).__name__}: {exc})",
            "is the API running there? set --api-url or AUTORECOVERY_API_URL",
        )


# -- Where to call, with which token ---------------------------------------------------------


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(args: argparse.Namespace) -> tuple[str, str | None]:
    """Return the API URL and token from the options, else the settings (environment).

    Raises:
        ApiFailure: exit 2 when the URL is not http(s) or the token cannot go in a header;
            the message names where the value came from, never the token.
    """
    url, token, source = args.api_url, args.token, "--token"
    if url is None or token is None:
        from autorecovery.settings import load_settings

        try:
            settings = load_settings()
        except InvalidInput as exc:
            raise ApiFailure(Exit.USAGE, str(exc), "fix the variable, or pass the option") from exc
        url = url or settings.api_url
        if token is None:
            source = "AUTORECOVERY_TOKEN"
            token = settings.token.get_secret_value() if settings.token else None
            dev_file = settings.data_dir / DEV_TOKEN_FILE
            if not token and _is_loopback(url):
                source = str(dev_file)
                with contextlib.suppress(OSError):  # no file, or not ours: go without a token
                    token = dev_file.read_text(encoding="utf-8").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiFailure(
            Exit.USAGE,
            f"the API URL {url!r} is not an http(s) URL",
            "set --api-url or AUTORECOVERY_API_URL, e.g. http://127.0.0.1:8800",
        )
    if token and not _TOKEN_CHARS.fullmatch(token):
        raise ApiFailure(
            Exit.USAGE,
            f"the token from {source} has spaces or non-ASCII characters",
            "copy it again without them",
        )
    return url, token or None


# -- Output ----------------------------------------------------------------------------------


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # A pipe gets wide lines instead of rich's 80 columns, so tables stay readable in logs.
    wide = None if stream.isatty() or os.environ.get("COLUMNS") else 160
    return Console(stderr=stderr, highlight=False, width=wide)


class Status(Protocol):
    """What the wait updates: a rich status line, or nothing."""

    def update(self, status: Text) -> None: ...


class _Quiet:
    def update(self, status: Text) -> None:
        pass


class Output:
    """Tables and messages for people, or JSON for scripts."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.out = _console()
        self.err = _console(stderr=True)

    def data(self, body: Any) -> None:
        """Print the API's JSON on one line."""
        sys.stdout.write(json.dumps(body) + "\n")
        sys.stdout.flush()

    def say(self, *parts: str | Text | tuple[str, str]) -> None:
        """Tell a person something (nothing in JSON mode)."""
        if not self.json_mode:
            self.out.print(Text.assemble(*parts))

    def progress_line(self, text: Text) -> None:
        """Print a line of progress to stderr (nothing in JSON mode)."""
        if not self.json_mode:
            self.err.print(text)

    @contextlib.contextmanager
    def status(self, text: Text) -> Iterator[Status]:
        """Show a spinner with ``text`` on a terminal while the block runs."""
        if self.json_mode or not self.err.is_terminal:
            yield _Quiet()
            return
        with self.err.status(text, spinner="dots") as live:
            yield live

    def failure(self, exc: ApiFailure) -> None:
        """Print what went wrong and what to do, to stderr."""
        line = Text.assemble(("autorecovery: ", "bold red"), exc.message)
        self.err.print(line, soft_wrap=True)
        if exc.hint:
            self.err.print(Text.assemble(("  what to do: ", "bold"), exc.hint), soft_wrap=True)


def _status(value: str | None) -> Text:
    return Text(value or "-", style=_STATUS_STYLE.get(value or "", ""))


def _s(value: object) -> Text:
    """A table cell: the value as plain text (no rich markup), or a dash."""
    return Text("-" if value is None or value == "" else str(value))


def _age(seconds: float | None) -> Text:
    return Text("-" if seconds is None else f"{seconds:.1f}s")


def _when(iso: str | None) -> Text:
    return Text(iso.replace("T", " ")[:19] if iso else "-")


def _table(*columns: str, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


# -- Commands --------------------------------------------------------------------------------


def _path(host_id: str) -> str:
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
    table = _table(
        "HOST", "CLUSTER", "STATUS", "REASON", "AUTORECOVERY", "REPORT AGE", "ACTIVATING", "LAST DECISION"
    )
    counts: dict[str, int] = {}
    for h in hosts:
        counts[h["status"]] = counts.get(h["status"], 0) + 1
        table.add_row(
            _s(h["id"]),
            _s(h["cluster"]),
            _status(h["status"]),
            _s(h.get("reason")),
            _s("on" if h["autorecovery"] else "off"),
            _age(h.get("report_age_s")),
            _s("yes" if h.get("in_flight") else ""),
            _s(h.get("last_decision")),
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
    h = api.call("GET", _path(args.host_id))
    if out.json_mode:
        out.data(h)
        return Exit.OK
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    reason = f"  {h['reason']}: {h.get('detail') or ''}" if h.get("reason") else ""
    grid.add_row("host", Text.assemble(Text(h["id"], style="bold"), "  ", _status(h["status"]), reason))
    grid.add_row("cluster", _s(h["cluster"]))
    grid.add_row("agent", _s(h["agent_url"]))
    grid.add_row("autorecovery", _s("on" if h["autorecovery"] else "off (only an admin activates it)"))
    grid.add_row("status since", _when(h.get("status_changed_at")))
    grid.add_row("report age", _age(h.get("report_age_s")))
    problems = h.get("problems") or []
    grid.add_row(
        "problems",
        Text("\n".join(f"{p['reason']}: {p['detail']}" for p in problems))
        if problems
        else Text("none", style="green"),
    )
    last = h.get("last_decision") or {}
    if last.get("code"):
        at = f" (at {_when(last['at'])})" if last.get("at") else ""
        grid.add_row("last decision", _s(f"{last['code']}: {last.get('detail') or ''}{at}"))
    why = h.get("why_not_recovered")
    if why:
        grid.add_row("why not up", _s(f"{why.get('code')}: {why.get('detail') or ''}"))
    for label, text in _hold_lines(h.get("holds") or {}):
        grid.add_row(label, Text(text, style="yellow"))
    running = h.get("activation")
    grid.add_row("activation", _activation_line(running) if running else _s("none running"))
    out.out.print(grid)
    recent = h.get("recent_activations") or []
    if recent:
        out.out.print()
        table = _table(
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
                _s(a["id"]),
                _s(a["trigger"]),
                _s(a["actor"]),
                _s(a["state"]),
                _s(a.get("outcome")),
                _s(a.get("detail")),
                _when(a.get("queued_at")),
                _when(a.get("ended_at")),
            )
        out.out.print(table)
    return Exit.OK


def _hold_lines(holds: dict[str, Any]) -> list[tuple[str, str]]:
    lines = []
    if holds.get("quarantined_at"):
        lines.append(
            (
                "quarantined",
                f"since {_when(holds['quarantined_at'])}: "
                f"{holds.get('quarantine_reason') or ''} (clear it with "
                "`autorecovery hosts quarantine-clear ID`)",
            )
        )
    if holds.get("next_attempt_at"):
        lines.append(
            (
                "backoff",
                f"{holds.get('failures', 0)} failed attempt(s); next after {_when(holds['next_attempt_at'])}",
            )
        )
    if holds.get("pause"):
        lines.append(("paused", _pause_text(holds["pause"])))
    if holds.get("observer_gate"):
        lines.append(("observer", holds["observer_gate"]))
    return lines


def cmd_hosts_activate(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Ask for a manual activation; with ``--wait``, follow it until it ends."""
    if args.timeout is not None and not args.wait:
        raise ApiFailure(Exit.USAGE, "--timeout only applies with --wait", "add --wait")
    started = time.monotonic()
    answer = api.call("POST", _path(args.host_id) + "/activate")
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
    started = time.monotonic()
    seen: str | None = None
    label = Text.assemble((host_id, "bold"), f": activation {activation_id}")
    try:
        with out.status(label) as status:
            while True:
                host = api.call("GET", _path(host_id))
                record = _find(host, activation_id) or record
                state = str(record.get("state"))
                elapsed = time.monotonic() - started
                line = Text.assemble(
                    label,
                    " ",
                    _status(state) if state not in IN_FLIGHT else Text(state, style="cyan"),
                    f" (host {host.get('status')}, {elapsed:.1f}s)",
                )
                if state != seen:
                    out.progress_line(line)
                    seen = state
                status.update(line)
                if state not in IN_FLIGHT:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    if out.json_mode:
                        out.data({"activation": record, "host": host})
                    raise ApiFailure(
                        Exit.TIMEOUT,
                        f"activation {activation_id} of {host_id} is still {state} after {timeout_s:g}s",
                        "it goes on without us: follow it with "
                        f"`autorecovery hosts show {host_id}`, or wait longer with --timeout",
                    )
                time.sleep(min(POLL_S, left))
    except KeyboardInterrupt:
        out.err.print(
            f"stopped waiting; activation {activation_id} goes on: `autorecovery hosts show {host_id}`"
        )
        return 130
    if out.json_mode:
        out.data({"activation": record, "host": host})
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
    answer = api.call("PUT", _path(args.host_id) + "/autorecovery", body={"enabled": args.state == "on"})
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
    answer = api.call("POST", _path(args.host_id) + "/maintenance", body=body)
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
    answer = api.call("POST", _path(args.host_id) + action)
    if out.json_mode:
        out.data(answer)
        return Exit.OK
    was = answer.get("previous") or {}
    parts = []
    if args.hosts_command == "quarantine-clear":
        parts.append(
            f"quarantine cleared (quarantined since {_when(was.get('quarantined_at'))}: "
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


def _pause_text(p: dict[str, Any]) -> str:
    where = "fleet-wide" if p["scope"] == "fleet" else f"cluster {p['scope']}"
    until = f"until {_when(p['expires_at'])}" if p.get("expires_at") else "until lifted"
    return f"{where} by {p['owner']} {until}: {p['reason']}"


def _say_gates(out: Output, gate: str | None, pauses: list[dict[str, Any]]) -> None:
    if gate:
        out.say(("observer holds automatic activation: ", "bold yellow"), gate)
    for p in pauses:
        out.say(("paused ", "bold yellow"), _pause_text(p))


def cmd_plan(api: ApiClient, args: argparse.Namespace, out: Output) -> int:
    """Show what the next monitoring tick would do for each host, and why."""
    plan = api.call("GET", "/plan", params={"cluster": args.cluster})
    if out.json_mode:
        out.data(plan)
        return Exit.OK
    _say_gates(out, plan.get("gate"), plan.get("pauses") or [])
    table = _table("HOST", "CLUSTER", "STATUS", "NEXT", "ACTION", "WHY", "DETAIL")
    for e in plan["hosts"]:
        action = Text(e["action"], style="bold green" if e["action"] == "activate" else "")
        table.add_row(
            _s(e["host_id"]),
            _s(e["cluster"]),
            _status(e["status"]),
            _status(e["next_status"]),
            action,
            _s(e["code"]),
            _s(e["detail"]),
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
        out.say("automatic activation paused ", _pause_text(pause))
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
        out.say("automatic activation resumed; lifted the pause ", _pause_text(pause))
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
    grid.add_row("last full tick", _when(state.get("last_full_tick_at")))
    grid.add_row(
        "silent hosts", _s(f"{state.get('silent_hosts', 0)} of {state.get('observed_hosts', 0)} observed")
    )
    in_flight = state.get("in_flight") or {}
    grid.add_row("in flight", _s(", ".join(f"{c}: {n}" for c, n in sorted(in_flight.items())) or "none"))
    out.out.print(grid)
    pauses = state.get("pauses") or []
    out.out.print()
    if pauses:
        table = _table("SCOPE", "OWNER", "SINCE", "UNTIL", "REASON", title="pauses")
        for p in pauses:
            table.add_row(
                _s(p["scope"]),
                _s(p["owner"]),
                _when(p["created_at"]),
                _when(p["expires_at"]) if p.get("expires_at") else _s("lifted by hand"),
                _s(p["reason"]),
            )
        out.out.print(table)
    else:
        out.say("no pause in force")
    incidents = state.get("incidents") or []
    if incidents:
        out.out.print()
        table = _table("INCIDENT", "CLUSTER", "REASON", "SUBJECT", "HOSTS", "OPENED", title="open incidents")
        for i in incidents:
            table.add_row(
                _s(i["id"]),
                _s(i["cluster"]),
                _s(i["reason"]),
                _s(i["subject"]),
                _s(i["hosts"]),
                _when(i["opened_at"]),
            )
        out.out.print(table)
    else:
        out.say("no open incident")
    return Exit.OK


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
            "object_type": "host" if args.host else None,
            "object_id": args.host,
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
    table = _table("ID", "AT", "OBJECT", "EVENT", "ACTOR", "REASON", "DETAILS")
    for e in page["entries"]:
        details = json.dumps(e.get("details") or {}, separators=(",", ":"))
        table.add_row(
            _s(e["id"]),
            _when(e["at"]),
            _s(f"{e['object_type']} {e['object_id']}"),
            _s(e["event"]),
            _s(e["actor"]),
            _s(e.get("reason")),
            _s(details),
        )
    out.out.print(table)
    if page.get("next_before"):
        out.say(f"older entries: --before {page['next_before']}")
    return Exit.OK


# -- Parser ----------------------------------------------------------------------------------

Command = Callable[[ApiClient, argparse.Namespace, Output], int]


def run_command(command: Command) -> Callable[[argparse.Namespace], int]:
    """Wrap a command: resolve URL and token, call it, turn a failure into its exit code."""

    def handle(args: argparse.Namespace) -> int:
        out = Output(json_mode=args.json)
        try:
            url, token = resolve(args)
            with ApiClient(url, token, transport=args.transport) as api:
                return int(command(api, args, out))
        except ApiFailure as exc:
            out.failure(exc)
            return int(exc.exit_code)

    return handle


def _positive(kind: Callable[[str], float | int]) -> Callable[[str], Any]:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
        return value

    return parse


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    api = common.add_argument_group("API")
    api.add_argument(
        "--api-url", metavar="URL", help="the API (default: AUTORECOVERY_API_URL, else http://127.0.0.1:8800)"
    )
    api.add_argument(
        "--token",
        help="bearer token (default: AUTORECOVERY_TOKEN; prefer the variable, arguments show in `ps`)",
    )
    api.add_argument("--json", action="store_true", help="print the API's JSON for scripts")
    common.set_defaults(transport=None)
    return common


def add_operator_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``hosts``, ``plan``, ``audit``, ``pause``, ``resume`` and ``safety`` to ``autorecovery``."""
    common = [_common()]
    codes = (
        "exit codes: 0 ok, 1 failed, 2 bad input, 3 timeout, 4 not found, 5 conflict, "
        "6 auth, 7 API unreachable"
    )
    hosts = sub.add_parser("hosts", help="list, show and operate hosts through the API", epilog=codes)
    hsub = hosts.add_subparsers(dest="hosts_command", required=True, metavar="HOSTS_COMMAND")

    ls = hsub.add_parser("list", parents=common, help="list hosts", epilog=codes)
    ls.add_argument("--status", choices=[s.value for s in HostStatus])
    ls.add_argument("--cluster", metavar="ID")
    ls.add_argument("--autorecovery", choices=("on", "off"))
    ls.add_argument("--limit", type=_positive(int), help="at most this many (default: all)")
    ls.add_argument("--after", metavar="ID", help="start after this host id")
    ls.set_defaults(handler=run_command(cmd_hosts_list))

    show = hsub.add_parser("show", parents=common, help="a host, and why it is not up", epilog=codes)
    show.add_argument("host_id", metavar="ID")
    show.set_defaults(handler=run_command(cmd_hosts_show))

    act = hsub.add_parser(
        "activate",
        parents=common,
        epilog=codes,
        help="activate a host now, whatever its autorecovery flag says",
    )
    act.add_argument("host_id", metavar="ID")
    act.add_argument(
        "--wait", action="store_true", help="follow the activation; exit 0 when the host is up, 1 when not"
    )
    act.add_argument(
        "--timeout",
        type=_positive(float),
        metavar="SECONDS",
        help=f"with --wait: give up waiting after this long, exit 3 (default {DEFAULT_WAIT_S:g})",
    )
    act.set_defaults(handler=run_command(cmd_hosts_activate))

    flag = hsub.add_parser(
        "autorecovery", parents=common, epilog=codes, help="turn a host's autorecovery on or off"
    )
    flag.add_argument("host_id", metavar="ID")
    flag.add_argument("state", choices=("on", "off"))
    flag.set_defaults(handler=run_command(cmd_hosts_autorecovery))

    maint = hsub.add_parser(
        "maintenance",
        parents=common,
        epilog=codes,
        help="take a host out of service until an admin activates it",
    )
    maint.add_argument("host_id", metavar="ID")
    maint.add_argument("--reason", help="why, for the audit log")
    maint.set_defaults(handler=run_command(cmd_hosts_maintenance))

    for name, text in (
        ("quarantine-clear", "take a host out of flap quarantine and reset its backoff"),
        ("backoff-reset", "forget a host's failed automatic activations (a quarantine stays)"),
    ):
        holds = hsub.add_parser(name, parents=common, epilog=codes, help=text)
        holds.add_argument("host_id", metavar="ID")
        holds.set_defaults(handler=run_command(cmd_hosts_holds))

    plan = sub.add_parser(
        "plan", parents=common, epilog=codes, help="what the next tick would do for each host, and why"
    )
    plan.add_argument("--cluster", metavar="ID")
    plan.set_defaults(handler=run_command(cmd_plan))

    audit = sub.add_parser("audit", parents=common, help="the audit log, newest first", epilog=codes)
    audit.add_argument("--host", metavar="ID", help="entries about this host")
    audit.add_argument("--actor", help="token name, or auto")
    audit.add_argument("--event", help="e.g. activation_succeeded, autorecovery_disabled")
    audit.add_argument("--since", help="RFC 3339 time with a zone, or 30m, 2h, 1d ago")
    audit.add_argument("--limit", type=_positive(int), default=50, help="default 50")
    audit.add_argument(
        "--before",
        type=_positive(int),
        metavar="ENTRY_ID",
        help="entries older than this one (the next page)",
    )
    audit.set_defaults(handler=run_command(cmd_audit))

    pause = sub.add_parser(
        "pause", parents=common, epilog=codes, help="stop automatic activation, fleet-wide or for one cluster"
    )
    pause.add_argument("--cluster", metavar="ID", help="only this cluster (default: the fleet)")
    pause.add_argument("--reason", required=True, help="why, for the audit log and the plan")
    pause.add_argument(
        "--for",
        dest="duration",
        type=duration_s,
        metavar="DURATION",
        help="end by itself after 30m, 2h, 600s, 1h30m, ... (default: until `autorecovery resume`)",
    )
    pause.set_defaults(handler=run_command(cmd_pause))

    resume = sub.add_parser(
        "resume", parents=common, epilog=codes, help="lift a pause, fleet-wide or of one cluster"
    )
    resume.add_argument("--cluster", metavar="ID", help="only this cluster (default: the fleet)")
    resume.set_defaults(handler=run_command(cmd_resume))

    safety = sub.add_parser(
        "safety",
        parents=common,
        epilog=codes,
        help="what holds automatic activation: observer, pauses, incidents",
    )
    safety.set_defaults(handler=run_command(cmd_safety))
