"""The pure core stays pure: ``models/`` imports no I/O library, reads no clock, no environment.

And the imports point inward: the application (``models/``, ``autorecovery/``) never imports an
entrypoint (``api/``, ``workers/``, ``cli/``) or a tool (``harness/``, ``bench/``, the tests).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import models

MODELS_DIR = Path(models.__file__).parent
ROOT = MODELS_DIR.parent
MODULES = sorted(MODELS_DIR.rglob("*.py"))

#: Top-level packages ``models/`` may never import.
FORBIDDEN_PACKAGES = frozenset(
    {
        "redis",
        "psycopg",
        "psycopg_pool",
        "celery",
        "kombu",
        "httpx",
        "fastapi",
        "os",
        "time",
        "autorecovery",
        "workers",
        "api",
        "requests",
        "socket",
        "subprocess",
        "random",
        "uuid",
    }
)
#: Dotted calls and attributes that read the clock or the environment.
FORBIDDEN_DOTTED = frozenset(
    {
        "datetime.now",
        "datetime.utcnow",
        "datetime.today",
        "date.today",
        "time.time",
        "time.monotonic",
        "time.perf_counter",
        "os.environ",
        "os.getenv",
        "datetime.datetime.now",
        "datetime.datetime.utcnow",
        "datetime.date.today",
    }
)


def _dotted(node: ast.AST) -> str | None:
    """Return ``a.b.c`` for an attribute chain on a name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def violations(source: str, filename: str = "<source>") -> list[str]:
    """List what ``source`` does that a module of the pure core must not."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_PACKAGES:
                    found.append(f"{filename}:{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            root = (node.module or "").split(".")[0]
            if node.level == 0 and root in FORBIDDEN_PACKAGES:
                found.append(f"{filename}:{node.lineno}: from {node.module} import ...")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id
            in (
                "getenv",
                "__import__",
                "open",
            )
        ):
            found.append(f"{filename}:{node.lineno}: call {node.func.id}()")
        elif isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is not None and dotted in FORBIDDEN_DOTTED:
                found.append(f"{filename}:{node.lineno}: {dotted}")
    return found


def test_models_has_modules() -> None:
    names = {p.name for p in MODULES}
    assert {"assessment.py", "domain.py", "policy.py", "report.py", "errors.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(MODELS_DIR)))
def test_models_module_is_pure(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import redis",
        "import psycopg.rows",
        "from psycopg_pool import ConnectionPool",
        "import celery",
        "from kombu import Queue",
        "import httpx as h",
        "from fastapi import FastAPI",
        "import os",
        "from os import environ",
        "import time",
        "from autorecovery.adapters.store import Repos",
        "import workers",
        "from api import app",
        "from datetime import datetime\nx = datetime.now()",
        "from datetime import datetime\nx = datetime.utcnow()",
        "import datetime\nx = datetime.datetime.now()",
        "x = time.time()",
        "x = os.environ['HOME']",
        "f = datetime.now",
    ],
)
def test_the_checker_catches(source: str) -> None:
    assert violations(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import UTC, datetime, timedelta",
        "from models.domain import Report",
        "from .domain import Report",
        "from __future__ import annotations",
        "def f(now): return now.timestamp()",
    ],
)
def test_the_checker_allows(source: str) -> None:
    assert violations(source) == []


#: The application: the pure core and the services with their adapters.
APPLICATION = ("models", "autorecovery")
#: Its entrypoints (``cli`` also reaches the tools around it) and the tools (simulator, embedded
#: servers, ``up``, benchmarks, tests). They import the application, never the reverse.
ENTRYPOINTS = ("api", "workers", "cli")
TOOLS = ("harness", "bench", "tests")


def _imports_of(source: str, filename: str = "<source>") -> list[str]:
    """Every absolute import of ``source``, those inside functions included."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _imports_into(packages: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    root = MODELS_DIR.parent
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found += [f"{path.relative_to(root)}: {name}"
                      for name in _imports_of(path.read_text(encoding="utf-8"), str(path))
                      if name.split(".")[0] in forbidden]
    return found


def test_the_application_never_imports_an_entrypoint_or_a_tool() -> None:
    """``models/`` and ``autorecovery/`` point inward only, without exception."""
    assert _imports_into(APPLICATION, ENTRYPOINTS + TOOLS) == []


def test_the_ports_own_their_types_and_import_no_adapter() -> None:
    """``autorecovery/ports`` declares rows, connections and protocols; adapters implement them."""
    root = MODELS_DIR.parent
    found = [
        f"{path.relative_to(root)}: {name}"
        for path in sorted((root / "autorecovery" / "ports").rglob("*.py"))
        for name in _imports_of(path.read_text(encoding="utf-8"), str(path))
        if name.startswith(("autorecovery.adapters", "autorecovery.services"))
    ]
    assert found == []


def test_the_server_entrypoints_never_import_the_cli_or_the_tools() -> None:
    """Only the CLI reaches the tools (``autorecovery up``, ``sim``, ``agent-check``)."""
    assert _imports_into(("api", "workers"), ("cli", *TOOLS)) == []


@pytest.mark.parametrize(
    "source",
    [
        "import api",
        "from workers.tasks import monitoring_tick",
        "def f():\n    from harness.sim import Fleet",
        "import cli.main as cli",
        "from cli.ops import Exit",
    ],
)
def test_the_import_checker_sees(source: str) -> None:
    assert [name for name in _imports_of(source) if name.split(".")[0] in ENTRYPOINTS + TOOLS] != []


def test_services_are_built_only_by_the_composition_root() -> None:
    """Entrypoints and tools get their services from ``autorecovery/bootstrap.py``, never build them."""
    built = []
    for folder in ("cli", "api", "workers", "harness", "bench", "autorecovery"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "autorecovery" / "bootstrap.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                called = node.func if isinstance(node, ast.Call) else None
                if isinstance(called, ast.Name) and called.id.endswith("Service"):
                    built.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}")
    assert built == []
