"""The agent as a real process: restart keeps fences and results, token and TLS refusals."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.hostagent import AUTH, TOKEN, HostTree, agent_url, in_ci, start_agent
from tests.support.processes import Proc


class Agents:
    """Starts agent processes on a tree's config and stops every one at the end."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[Proc] = []

    def start(self, config: Path, *args: str) -> Proc:
        proc = start_agent(config, self.log_dir, "agent", *args)
        self.procs.append(proc)
        return proc

    def run(self, config: Path) -> str:
        """Start an agent and return its URL."""
        return agent_url(self.start(config))

    def refused(self, config: Path) -> str:
        """Start an agent that must refuse to start; return what it said."""
        proc = self.start(config)
        proc.popen.wait(30)
        assert proc.popen.returncode == 2, proc.log()
        return proc.log()

    def kill(self) -> None:
        """Kill every agent at once, as a crash or a power cut would."""
        for proc in self.procs:
            proc.popen.kill()
            proc.popen.wait(10)

    def stop(self) -> None:
        """Stop every agent gracefully (SIGTERM)."""
        for proc in self.procs:
            proc.stop()


@pytest.fixture
def agents(tmp_path: Path, libvirt_uri: str) -> Iterator[Agents]:
    started = Agents(tmp_path / "logs")
    yield started
    started.stop()


def test_a_restarted_agent_refuses_old_fences_and_answers_for_its_inits(
    tree: HostTree, agents: Agents
) -> None:
    config = tree.write_config()
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
    assert all(TOKEN not in proc.log() for proc in agents.procs)  # no secret in the logs


def test_an_agent_killed_during_init_answers_for_it_after_restart(tree: HostTree, agents: Agents) -> None:
    config = tree.write_config("[testing]\ninit_delay_s = 30.0\n")
    url = agents.run(config)
    with httpx.Client(base_url=url, headers=AUTH, timeout=20) as client:
        accepted = client.post(
            "/init", json={"fence": 3, "activation_id": "a1"}, headers={"Prefer": "respond-async"}
        )
        assert accepted.status_code == 202
        assert client.get("/report").json()["init"]["activation_id"] == "a1"
    agents.kill()

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
        ("mode", "has mode 0644: group or other users have access to it; run `chmod 600"),
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
    said = agents.refused(tree.write_config())
    assert "token_file" in said and words in said
    assert secret not in said


def test_a_second_agent_on_the_same_state_is_refused(tree: HostTree, agents: Agents) -> None:
    config = tree.write_config()
    agents.run(config)
    assert "another agent runs on" in agents.refused(config)


def test_a_bad_config_names_the_key(tree: HostTree, agents: Agents) -> None:
    config = tree.write_config('networks = ["ovirtmgmt", "nope"]\n')  # lands in [init]
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
    config = tree.write_config()
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
    key.chmod(0o600)
    cert.write_text("not a certificate\n")
    said = agents.refused(config)
    assert "server.tls_cert_file" in said and "does not load" in said


def test_check_prints_a_fresh_report_and_says_whether_the_host_is_clean(
    tree: HostTree, agents: Agents
) -> None:
    config = tree.write_config()
    before = sorted((p.name, p.read_bytes()) for p in (tree.root / "state").iterdir())
    clean = agents.start(config, "--check")
    assert clean.popen.wait(30) == 0, clean.log()
    assert '"storage_domains"' in clean.log() and "clean; an init would answer ok" in clean.log()
    tree.set_link("eth1", "down", None)
    faulty = agents.start(config, "--check")
    assert faulty.popen.wait(30) == 1
    assert "network_interface_down: network storage: interface eth1 is down" in faulty.log()
    after = sorted((p.name, p.read_bytes()) for p in (tree.root / "state").iterdir())
    assert after == before  # a check changes nothing
