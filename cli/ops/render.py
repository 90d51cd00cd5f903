"""What the operator commands print: tables and messages for people, JSON lines for scripts."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.ops.client import ApiFailure
from models.clock import stamp

STATUS_STYLE = {
    "unassigned": "dim",
    "up": "green",
    "initializing": "cyan",
    "non_operational": "red",
    "non_responsive": "yellow",
    "error": "magenta",
    "maintenance": "blue",
    "done": "green",
    "failed": "red",
    "skipped": "yellow",
    "abandoned": "red",
    "active": "green",
    "inactive": "red",
}


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
        if not self.json_mode:  # a message is one line, however long: a pipe reads it whole
            self.out.print(Text.assemble(*parts), soft_wrap=True)

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


def status_cell(value: str | None) -> Text:
    """A status, coloured by what it means."""
    return Text(value or "-", style=STATUS_STYLE.get(value or "", ""))


def cell(value: object) -> Text:
    """A table cell: the value as plain text (no rich markup), or a dash."""
    return Text("-" if value is None or value == "" else str(value))


def span(seconds: float) -> str:
    """A length of time for people: ``8.2s``, ``4m05s``, ``2h07m``, ``3d04h``."""
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def age(seconds: float | None) -> Text:
    """An age (``span``), or a dash."""
    return Text("-" if seconds is None else span(seconds))


def when(iso: str | None) -> Text:
    """An ISO time as ``YYYY-MM-DD HH:MM:SS UTC`` (whole seconds, the zone said), or a dash."""
    if not iso:
        return Text("-")
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return Text(iso)
    return Text(stamp(at))  # the API sends zoned times; a naive one is taken as UTC


def reason_text(code: str | None, detail: str | None) -> str:
    """``code: detail`` said once: a detail that starts with its own code does not repeat it."""
    text = (detail or "").strip()
    if code and text.startswith(f"{code}: "):
        text = text[len(code) + 2 :]
    if not code:
        return text
    return f"{code}: {text}" if text else code


def new_table(*columns: str, title: str | None = None) -> Table:
    """A borderless table with bold headers whose cells fold rather than cut."""
    table = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def pause_text(p: dict[str, Any]) -> str:
    """A pause in one line: where, by whom, until when, why."""
    where = "fleet-wide" if p["scope"] == "fleet" else f"cluster {p['scope']}"
    until = f"until {when(p['expires_at'])}" if p.get("expires_at") else "until lifted"
    return f"{where} by {p['owner']} {until}: {p['reason']}"
