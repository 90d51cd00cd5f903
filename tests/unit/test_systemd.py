"""The systemd units' sandbox, scored by ``systemd-analyze security --offline=yes`` (no running
systemd needed), and their resource limits.

In CI a missing systemd-analyze is a failure, never a skip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.system import system_tool

SYSTEMD = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
#: The control plane's units (the host agent's is scored too, with its own bar: it needs /dev/kvm).
CONTROL = ["api", "worker@", "beat", "migrate", "flower"]
#: "OK" on systemd's scale is below 5; the agent scores 2.2.
BAR = 3.0
SCORE = re.compile(r"Overall exposure level for \S+: (\d+\.\d+)")


def _score(unit: str, tmp_path: Path) -> float:
    analyze = system_tool("systemd-analyze", package="systemd")
    target = tmp_path / unit.replace("@.", "@1.")
    shutil.copy(SYSTEMD / unit, target)
    done = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = SCORE.search(done.stdout + done.stderr)
    assert found, done.stdout + done.stderr
    return float(found.group(1))


@pytest.mark.parametrize("role", [*CONTROL, "agent"])
def test_every_unit_is_sandboxed(role: str, tmp_path: Path) -> None:
    score = _score(f"autorecovery-{role}.service", tmp_path)
    assert score <= BAR, f"{role}: exposure {score} above {BAR} (was 8.5 EXPOSED without a sandbox)"


@pytest.mark.parametrize("role", CONTROL)
def test_every_control_plane_unit_has_resource_limits(role: str) -> None:
    unit = (SYSTEMD / f"autorecovery-{role}.service").read_text()
    for directive in ("MemoryMax=", "TasksMax="):
        assert re.search(rf"^{directive}\S+", unit, re.MULTILINE), (role, directive)
    for directive in (
        "MemoryDenyWriteExecute=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
    ):
        assert directive in unit, (role, directive)
