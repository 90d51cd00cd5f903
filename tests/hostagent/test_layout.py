"""The agent stands alone: no product server code, no test tools; its protocol core stays portable."""

from __future__ import annotations

import ast
from pathlib import Path

import hostagent

PACKAGE = Path(hostagent.__file__).parent


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_agent_imports_no_product_server_code_and_no_test_tools() -> None:
    forbidden = ("harness", "bench", "tests", "workers", "api", "autorecovery", "celery", "psycopg", "redis")
    found = [
        f"{path.name}: {name}"
        for path in sorted(PACKAGE.glob("*.py"))
        for name in imports_of(path)
        if name.split(".")[0] in forbidden
    ]
    assert found == []


def test_the_protocol_core_needs_neither_libvirt_nor_a_web_framework() -> None:
    """The fleet simulator reuses hostagent.protocol and hostagent.persist as they are."""
    for module in ("protocol.py", "persist.py"):
        roots = {name.split(".")[0] for name in imports_of(PACKAGE / module)}
        assert roots <= {
            "__future__",
            "copy",
            "json",
            "os",
            "threading",
            "collections",
            "dataclasses",
            "datetime",
            "pathlib",
            "typing",
            "hostagent",
            "models",
        }, roots
