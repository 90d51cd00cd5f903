"""The agent's own distribution: a clean venv with only ``autorecovery-agent`` runs the agent.

``pip install ./packaging/agent`` into a fresh virtual environment (dependencies from the
configured index, libvirt-python from pip's cache when it was built before); the control plane
(Celery, PostgreSQL and Redis clients, the API, the workers, the harness) is not there; the
``autorecovery-agent`` command serves a host on libvirt's test driver and answers its report.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.hostagent import AUTH, REPO, HostTree, agent_url, in_ci
from tests.support.processes import spawn

CONTROL_PLANE = (
    "celery",
    "kombu",
    "psycopg",
    "psycopg-pool",
    "redis",
    "aiohttp",
    "httpx",
    "msgspec",
    "autorecovery",
    "flower",
    "celery-redbeat",
    "prometheus-client",
)


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("agent-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, timeout=120)
    done = subprocess.run(
        [str(where / "bin" / "pip"), "install", "--quiet", str(REPO / "packaging" / "agent")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        message = f"pip install ./packaging/agent failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return where


def test_only_the_agent_is_installed(venv: Path) -> None:
    listed = subprocess.run(  # the venv's own packages, not what a PYTHONPATH adds to it
        [str(venv / "bin" / "pip"), "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout
    installed = {line.split("==")[0].lower() for line in listed.splitlines() if line}
    assert "autorecovery-agent" in installed and "libvirt-python" in installed
    assert installed.isdisjoint(CONTROL_PLANE), installed & set(CONTROL_PLANE)
    assert len(installed) < 25, sorted(installed)
    names = ("api", "workers", "harness", "autorecovery", "cli")
    probe = f"import importlib.util as u; print([m for m in {names!r} if u.find_spec(m)])"
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env={"PATH": os.environ["PATH"]},
    ).stdout
    assert found.strip() == "[]"


def test_the_installed_agent_serves_a_report_on_the_test_driver(
    venv: Path, tree: HostTree, libvirt_uri: str, tmp_path: Path
) -> None:
    config = tree.write_config()
    proc = spawn(
        [str(venv / "bin" / "autorecovery-agent"), "--config", str(config), "--port", "0"],
        {"PATH": os.environ["PATH"]},
        tmp_path / "logs",
        "packaged-agent",
    )
    try:
        url = agent_url(proc)
        with httpx.Client(base_url=url, headers=AUTH, timeout=20) as client:
            report = client.get("/report")
            assert report.status_code == 200, report.text
            body = report.json()
            assert (
                body["host_id"] == "h-001" and body["protocol"] == 2 and body["agent"]["highest_fence"] == 0
            )
            assert client.post("/fence", json={"fence": 3}).json() == {"highest": 3}
    finally:
        proc.stop()
    assert "Traceback" not in proc.log()
