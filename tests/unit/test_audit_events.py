"""Every audit event the code writes is in ``models.audit_events``, the one list of them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from models.audit_events import AUDIT_EVENTS, CLOSING_EVENTS

ROOT = Path(__file__).resolve().parents[2] / "autorecovery"
#: ``INSERT INTO audit_log (...) SELECT <at>, '<object type>', <id>, '<event>'`` in the stores' SQL.
_SQL = re.compile(
    r"INSERT INTO audit_log \(at, object_type, object_id, event, actor, reason, details\)\s*"
    r"(?:VALUES\s*\(|SELECT)\s*[^,]+,\s*'[a-z_]+',\s*[^,]+,\s*'([a-z_]+)'"
)
#: Calls whose argument at this position is the event: ``Trail.host(id, event, ...)``,
#: ``core.audit(conn, kind, id, event, ...)``, ``accounting._audit(conn, id, now, event, ...)``.
_EVENT_ARG = {"host": 1, "cluster": 1, "storage_domain": 1, "pause": 1, "audit": 3, "_audit": 3}
_FORMATTED: dict[str, list[str]] = {}
#: Tables of events, read by key: ``CLOSING_EVENTS[closing.state]`` can be any of its values.
_TABLES = {"CLOSING_EVENTS": list(CLOSING_EVENTS.values())}


def _strings(node: ast.AST) -> list[str]:
    """The event names an expression can be: its string constants, and what an f-string expands to."""
    if isinstance(node, ast.Constant):
        return [node.value] if isinstance(node.value, str) else []
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in _TABLES:
        return list(_TABLES[node.value.id])
    if isinstance(node, ast.JoinedStr):
        text = ast.unparse(node)[2:-1]
        assert text in _FORMATTED, f"an event built as f'{text}': list what it can be in _FORMATTED"
        return list(_FORMATTED[text])
    return [name for child in ast.iter_child_nodes(node) for name in _strings(child)]


def written_events() -> dict[str, set[str]]:
    """Scan the package for the events it writes: event -> files."""
    found: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names = [m.group(1) for m in _SQL.finditer(text)]
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                at = _EVENT_ARG.get(name)
                if at is not None and len(node.args) > at:
                    names += _strings(node.args[at])
                names += [s for kw in node.keywords if kw.arg == "event" for s in _strings(kw.value)]
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "event" for t in node.targets
            ):
                names += _strings(node.value)
        for name in names:
            found.setdefault(name, set()).add(str(path.relative_to(ROOT.parent)))
    return found


def test_every_event_written_is_in_the_list() -> None:
    written = written_events()
    assert len(written) > 25, sorted(written)  # the scan still finds the events
    missing = {name: sorted(files) for name, files in written.items() if name not in AUDIT_EVENTS}
    assert not missing, f"audit events written but not in models/audit_events.py: {missing}"


def test_every_listed_event_is_written_and_said_in_one_line() -> None:
    written = written_events()
    assert sorted(set(AUDIT_EVENTS) - set(written)) == []  # no event listed that nothing writes
    for name, meaning in AUDIT_EVENTS.items():
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", name) and meaning and "\n" not in meaning, name


@pytest.mark.parametrize("event", ["activation_failed", "quarantined", "pause_expired", "status_changed"])
def test_the_scan_sees_events_written_every_way(event: str) -> None:
    assert event in written_events()  # f-string, a wrapper's argument, SQL, a Trail call
