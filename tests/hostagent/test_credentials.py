"""Per-host credentials against real agent processes: host A's token opens nothing of host B's.

Tokens come from ``autorecovery hosts enroll`` (HMAC of the product key and the host id); the
product's client sends each host its own, tries the previous key's after a 401 during a
rotation, and never sends one over plain http outside loopback and the allowed networks.
"""

from __future__ import annotations

import ipaddress
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from autorecovery.adapters.agents import Target
from autorecovery.adapters.agents.addresses import may_send_credential
from autorecovery.adapters.agents.http import HttpAgentClient
from models.credentials import AgentCredentials, host_token
from tests.hostagent.test_process import Agents
from tests.hostagent.test_process import agents as agents  # noqa: F401 - fixture
from tests.support.hostagent import REPO, HostTree, make_tree

KEY = b"3f1c9a7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a"
OLD_KEY = b"9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
ROUTES = [
    ("GET", "/report", None),
    ("POST", "/init", {"fence": 5, "activation_id": "a1"}),
    ("POST", "/fence", {"fence": 99}),
    ("GET", "/init/a1", None),
    ("POST", "/storage-domains/sd-1/connect", {"fence": 5, "activation_id": "c1"}),
]


def _host(tmp_path: Path, libvirt_uri: str, host_id: str, key: bytes) -> tuple[HostTree, Path]:
    tree = make_tree(tmp_path / host_id)
    (tree.root / "token").write_text(host_token(key, host_id) + "\n")
    return tree, _config(tree, host_id)


def _config(tree: HostTree, host_id: str) -> Path:
    path = tree.write_config()
    path.write_text(path.read_text().replace('host_id = "h-001"', f'host_id = "{host_id}"'))
    return path


def _client(credentials: AgentCredentials) -> HttpAgentClient:
    return HttpAgentClient(
        report_timeout_s=10, init_timeout_s=10, concurrency=4, retries=0, credentials=credentials
    )


def test_a_credential_of_host_a_opens_no_route_of_host_b(
    tmp_path: Path, libvirt_uri: str, agents: Agents
) -> None:
    _, config_a = _host(tmp_path, libvirt_uri, "h-a", KEY)
    _, config_b = _host(tmp_path, libvirt_uri, "h-b", KEY)
    url_a, url_b = agents.run(config_a), agents.run(config_b)
    token_a = host_token(KEY, "h-a")
    with httpx.Client(base_url=url_b, headers={"Authorization": f"Bearer {token_a}"}, timeout=20) as b:
        for method, path, body in ROUTES:
            answer = b.request(method, path, json=body)
            assert (answer.status_code, answer.json()) == (401, {"error": "unauthorized"}), path
    client = _client(AgentCredentials(key=KEY))
    try:
        now = datetime.now(UTC)
        assert client.get_report(Target("h-a", url_a), now).agent_reachable
        report_b = client.get_report(Target("h-b", url_b), now)
        assert report_b.agent_reachable and report_b.agent is not None
        assert report_b.agent.highest_fence == 0  # nothing A's token sent moved B's fence
        wrong = client.get_report(Target("h-a", url_b), now)  # A's credential, B's address
        assert not wrong.agent_reachable and "401" in (wrong.error or "")
    finally:
        client.close()


def test_a_rotation_keeps_every_agent_answering(tmp_path: Path, libvirt_uri: str, agents: Agents) -> None:
    _, config_old = _host(tmp_path, libvirt_uri, "h-old", OLD_KEY)  # not re-enrolled yet
    _, config_new = _host(tmp_path, libvirt_uri, "h-new", KEY)
    url_old, url_new = agents.run(config_old), agents.run(config_new)
    now = datetime.now(UTC)
    rotating = _client(AgentCredentials(key=KEY, previous_key=OLD_KEY))
    rotated = _client(AgentCredentials(key=KEY))
    try:
        assert rotating.get_report(Target("h-old", url_old), now).agent_reachable
        assert rotating.raise_fence(Target("h-old", url_old), 3) == 3
        assert rotating.pull_reports([Target("h-old", url_old), Target("h-new", url_new)], now)[
            0
        ].agent_reachable
        assert not rotated.get_report(Target("h-old", url_old), now).agent_reachable  # previous key gone
        assert rotated.get_report(Target("h-new", url_new), now).agent_reachable
    finally:
        rotating.close()
        rotated.close()


def test_no_credential_goes_over_plain_http_outside_loopback() -> None:
    client = _client(AgentCredentials(key=KEY))
    allowed = HttpAgentClient(
        report_timeout_s=1,
        init_timeout_s=1,
        concurrency=1,
        retries=0,
        credentials=AgentCredentials(key=KEY),
        plain_http_networks=(ipaddress.ip_network("127.0.0.0/8"),),
    )
    try:
        report = client.get_report(Target("h-a", "http://10.1.2.3:8901"), datetime.now(UTC))
        assert not report.agent_reachable and "credential goes only over https" in (report.error or "")
        [pulled] = client.pull_reports([Target("h-a", "http://10.1.2.3:8901")], datetime.now(UTC))
        assert "credential goes only over https" in (pulled.error or "")
        sent = allowed.get_report(Target("h-a", "http://127.0.0.2:9"), datetime.now(UTC))
        assert "credential" not in (sent.error or "")  # allowed: it tried (and found nobody)
    finally:
        client.close()
        allowed.close()


@pytest.mark.parametrize("token", ["x" * 40, "short-token-1", "aaaabbbbccccddddaaaabbbbccccdddd"])
def test_the_agent_refuses_a_weak_token(tree: HostTree, agents: Agents, token: str) -> None:
    (tree.root / "token").write_text(token + "\n")
    said = agents.refused(tree.write_config())
    assert "token_file" in said and "weak token" in said and token not in said


def test_enroll_writes_the_host_token_the_ca_and_an_example(tmp_path: Path) -> None:
    key_file, ca = tmp_path / "agent.key", tmp_path / "ca.pem"
    key_file.write_bytes(KEY + b"\n")
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AUTORECOVERY_AGENT_KEY_FILE": str(key_file),
        "AUTORECOVERY_AGENT_CA_FILE": str(ca),
    }
    out = tmp_path / "kvm-17"
    done = subprocess.run(
        [sys.executable, "-m", "cli", "hosts", "enroll", "kvm-17", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    token = out / "agent.token"
    assert token.read_text().strip() == host_token(KEY, "kvm-17")
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert (out / "agents-ca.pem").read_text() == ca.read_text()
    assert 'host_id = "kvm-17"' in (out / "agent.toml.example").read_text()
    assert host_token(KEY, "kvm-17") not in done.stdout + done.stderr
    weak = tmp_path / "weak.key"
    weak.write_text("password\n")
    refused = subprocess.run(
        [sys.executable, "-m", "cli", "hosts", "enroll", "kvm-17", "--out", str(out)],
        env={**env, "AUTORECOVERY_AGENT_KEY_FILE": str(weak)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2 and "AUTORECOVERY_AGENT_KEY_FILE" in refused.stderr


@pytest.mark.parametrize(
    ("url", "networks", "allowed"),
    [
        ("https://kvm-17.example.net:8901", (), True),
        ("http://127.0.0.1:8901", (), True),
        ("http://[::1]:8901", (), True),
        ("http://localhost:8901", (), True),
        ("http://10.1.2.3:8901", (), False),
        ("http://10.1.2.3:8901", ("10.1.2.0/24",), True),
        ("http://10.1.3.3:8901", ("10.1.2.0/24",), False),
        ("http://kvm-17:8901", ("10.0.0.0/8",), False),  # a name over plain http: never
    ],
)
def test_where_a_credential_may_go(url: str, networks: tuple[str, ...], allowed: bool) -> None:
    nets = tuple(ipaddress.ip_network(n) for n in networks)
    assert may_send_credential(url, nets) is allowed


def test_tokens_are_per_host_and_the_previous_key_comes_second() -> None:
    both = AgentCredentials(key=KEY, previous_key=OLD_KEY)
    assert both.tokens("h-a") == [host_token(KEY, "h-a"), host_token(OLD_KEY, "h-a")]
    assert host_token(KEY, "h-a") != host_token(KEY, "h-b") and len(host_token(KEY, "h-a")) == 64
    assert AgentCredentials(fleet_token="fleet").tokens("h-a") == ["fleet"]  # noqa: S106
    assert "3f1c" not in repr(both)


def test_rotate_agent_key_keeps_the_old_key_as_the_previous_one(tmp_path: Path) -> None:
    key_file = tmp_path / "agent-key"
    key_file.write_bytes(OLD_KEY + b"\n")
    key_file.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "cli", "hosts", "rotate-agent-key", "--key-file", str(key_file)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    previous = tmp_path / "agent-key.previous"
    assert previous.read_bytes().strip() == OLD_KEY
    new = key_file.read_bytes().strip()
    assert new != OLD_KEY and len(new) == 64 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert new.decode() not in done.stdout + done.stderr
    both = AgentCredentials(key=new, previous_key=previous.read_bytes().strip())
    assert both.tokens("h-a")[1] == host_token(OLD_KEY, "h-a")  # agents not re-enrolled still answer
