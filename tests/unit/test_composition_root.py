"""One composition root: services are built in ``autorecovery/bootstrap.py`` and nowhere else."""

from __future__ import annotations

import ast
from pathlib import Path

import autorecovery.bootstrap

ROOT = Path(autorecovery.bootstrap.__file__).parents[1]
SERVICES = frozenset(
    {
        "ActivationService",
        "FleetService",
        "FleetViews",
        "MonitoringService",
        "SafetyService",
        "StorageService",
        "VmRunService",
    }
)
TREES = ("autorecovery", "api", "workers", "harness", "bench", "tests")


def constructions(source: str) -> list[str]:
    """Names of services that ``source`` constructs (``Name(...)`` or ``module.Name(...)``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in SERVICES:
            found.append(node.func.id)
        elif isinstance(node.func, ast.Attribute) and node.func.attr in SERVICES:
            found.append(node.func.attr)
    return found


def test_services_are_built_only_by_the_composition_root() -> None:
    built_elsewhere = [
        f"{path.relative_to(ROOT)}: {name}"
        for tree in TREES
        for path in sorted((ROOT / tree).rglob("*.py"))
        if path != Path(autorecovery.bootstrap.__file__)
        for name in constructions(path.read_text(encoding="utf-8"))
    ]
    assert built_elsewhere == []


def test_the_check_sees_a_construction() -> None:
    assert constructions("s = FleetService(db, enqueue)\nt = services.SafetyService(db, clock)") == [
        "FleetService",
        "SafetyService",
    ]
