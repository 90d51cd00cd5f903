"""The agent stands alone: no product server code, no test tools; its protocol core stays portable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import hostagent
from tests.unit.test_architecture import _imports_of

PACKAGE = Path(hostagent.__file__).parent


def imports_of(path: Path) -> list[str]:
    """Every absolute import of the module at ``path``."""
    return _imports_of(path.read_text(encoding="utf-8"), str(path))


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
            "uuid",
            "hostagent",
            "models",
        }, roots


def test_the_fleet_simulator_imports_without_libvirt() -> None:
    """harness.sim reuses the protocol core only: no libvirt, no agent host code."""
    script = (
        "import sys; sys.modules['libvirt'] = None\n"  # any import of libvirt now fails
        "import harness.sim, harness.sim.server\n"
        "assert 'hostagent.host' not in sys.modules and 'hostagent.protocol' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
