"""The agent as a real process: restart keeps fences and results, token and TLS refusals."""

from __future__ import annotations

import os
import select
import shutil
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hostagent.conftest import AUTH, HostTree, in_ci

ROOT = Path(__file__).resolve().parents[2]


def write_config(tree: HostTree, extra: str = "") -> Path:
    """Write the tree's agent config as TOML (relative paths: the config's folder is the tree)."""
    path = tree.root / "agent.toml"
    path.write_text(
        f"""host_id = "h-001"
state_dir = "state"
token_file = "token"
version = "4.5.2"
{extra}
[server]
bind = "127.0.0.1"
port = 0

[libvirt]
uri = "{tree.uri}"

[probes]
kvm_device = "dev/kvm"
cpuinfo = "proc/cpuinfo"
meminfo = "proc/meminfo"
sys_class_net = "sys/class/net"

[networks.ovirtmgmt]
libvirt_network = "ovirtmgmt"
interface = "eth0"

[storage_domains.sd-1]
pool = "pool-sd1"
"""
    )
    return path


class Agents:
    """Starts agent processes and stops every one at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, config: Path, *args: str) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "autorecovery.cli", "agent", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.procs.append(proc)
        return proc

    def url(self, proc: subprocess.Popen[str], timeout_s: float = 20) -> str:
        """Wait for the agent's "listening on URL" line."""
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.1)
            if ready:
                line = proc.stdout.readline()
                if " listening on " in line:
                    return line.rsplit(" ", 1)[1].strip()
            if proc.poll() is not None:
                raise AssertionError(
                    f"agent exited {proc.returncode}: {proc.stderr.read() if proc.stderr else ''}"
                )
        raise AssertionError("the agent did not say where it listens")

    def run(self, config: Path) -> str:
        """Start an agent and return its URL."""
        return self.url(self.start(config))

    def refused(self, config: Path) -> str:
        """Start an agent that must refuse to start; return what it said."""
        proc = self.start(config)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2, err
        return err

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop every agent started, and close its pipes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(sig)
                proc.wait(15)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


@pytest.fixture
def agents(libvirt_uri: str) -> Iterator[Agents]:
    started = Agents()
    yield started
    started.stop(signal.SIGKILL)


def test_a_restarted_agent_refuses_old_fences_and_answers_for_its_inits(
    tree: HostTree, agents: Agents
) -> None:
    config = write_config(tree)
    url = agents.run(config)
    with httpx.Client(base_url=url, headers=AUTH, timeout=20) as client:
        assert client.post("/init", json={"fence": 5, "activation_id": "a1"}).json() == {"ok": True}
        assert client.post("/fence", json={"fence": 8}).json() == {"highest": 8}
    agents.stop()

    url = agents.run(config)
    with httpx.Client(base_url=url, headers=AUTH, timeout=20) as client:
        stale = client.post("/init", json={"fence": 7, "activation_id": "a2"})
        assert (stale.status_code, stale.json()) == (409, {"error": "stale_fence", "highest": 8})
        status = client.get("/init/a1").json()
        assert (status["status"], status["ok"], status["fence"]) == ("done", True, 5)
        assert client.get("/report").json()["protocol"] == 2


def test_an_agent_killed_during_init_answers_for_it_after_restart(tree: HostTree, agents: Agents) -> None:
    config = write_config(tree, "[testing]\ninit_delay_s = 30.0\n")
    url = agents.run(config)
    with httpx.Client(base_url=url, headers=AUTH, timeout=20) as client:
        accepted = client.post(
            "/init", json={"fence": 3, "activation_id": "a1"}, headers={"Prefer": "respond-async"}
        )
        assert accepted.status_code == 202
        assert client.get("/report").json()["init"]["activation_id"] == "a1"
    agents.stop(signal.SIGKILL)

    url = agents.run(config)
    with httpx.Client(base_url=url, headers=AUTH, timeout=20) as client:
        status = client.get("/init/a1").json()
        assert (status["status"], status["ok"], status["reason"]) == ("done", False, "general")
        assert "stopped while this operation ran" in status["detail"]
        assert client.get("/report").json()["init"] is None
        assert client.post("/init", json={"fence": 2, "activation_id": "a2"}).json()["error"] == "stale_fence"


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        ("missing", "does not exist; create it"),
        ("empty", "is empty"),
        ("mode", "has mode 0644: other users may read it; run `chmod 600"),
    ],
)
def test_the_agent_refuses_to_start_with_a_bad_token_file(
    tree: HostTree, agents: Agents, fault: str, words: str
) -> None:
    token = tree.root / "token"
    secret = token.read_text().strip()
    if fault == "missing":
        token.unlink()
    elif fault == "empty":
        token.write_text("\n")
    else:
        token.chmod(0o644)
    said = agents.refused(write_config(tree))
    assert "token_file" in said and words in said
    assert secret not in said


def test_a_second_agent_on_the_same_state_is_refused(tree: HostTree, agents: Agents) -> None:
    config = write_config(tree)
    agents.run(config)
    assert "another agent runs on" in agents.refused(config)


def test_a_bad_config_names_the_key(tree: HostTree, agents: Agents) -> None:
    config = write_config(tree, '[init]\nnetworks = ["ovirtmgmt", "nope"]\n')
    said = agents.refused(config)
    assert "init.networks" in said and "nope" in said


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made with openssl."""
    if shutil.which("openssl") is None:
        if in_ci():
            pytest.fail("openssl is missing: CI must run the TLS test")
        pytest.skip("openssl is not installed")
    cert, key = directory / "agent.crt", directory / "agent.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)
    return cert, key


def test_tls_serves_verified_https_only(tree: HostTree, agents: Agents) -> None:
    cert, key = make_certificate(tree.root)
    tls = f'[server]\nbind = "127.0.0.1"\nport = 0\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"\n'
    config = write_config(tree)
    config.write_text(config.read_text().replace('[server]\nbind = "127.0.0.1"\nport = 0\n', tls))
    url = agents.run(config)
    assert url.startswith("https://127.0.0.1:")
    with httpx.Client(headers=AUTH, verify=ssl.create_default_context(cafile=cert), timeout=20) as client:
        assert client.get(f"{url}/report").json()["protocol"] == 2
        assert client.get(f"{url}/report", headers={"Authorization": "Bearer nope"}).status_code == 401
    with pytest.raises(httpx.ConnectError), httpx.Client(headers=AUTH, timeout=5) as unverified:
        unverified.get(f"{url}/report")  # the system's CAs do not know this certificate
    with pytest.raises(httpx.HTTPError), httpx.Client(headers=AUTH, timeout=5) as plain:
        plain.get(url.replace("https://", "http://") + "/report")

    agents.stop()
    key.chmod(0o644)
    assert "tls_key_file" in agents.refused(config)
