"""Per-host credentials end to end: a real worker with the product key, real agents each with
its own enrolled token. Both hosts come up; host A registered at host B's address (a wrong
agent_url, or A's credential replayed at B) opens nothing there, and B is unaffected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.credentials import host_token
from tests.integration.api_fixtures import ApiServer
from tests.integration.test_agent_e2e import CLUSTER, shown, tick_until  # noqa: F401 - fixture
from tests.integration.test_agent_e2e import real_hosts as real_hosts
from tests.support.hostagent import agent_url, start_agent
from tests.support.processes import start_worker

pytest_plugins = ("tests.integration.api_fixtures",)

KEY = "5c0e8a2f7d1b9e4c6a3f0d8b2e7c1a9f4d6b0e3c8a5f2d7b1e9c4a6f0d3b8e2c"


def test_each_agent_takes_only_its_own_hosts_credential(
    api: ApiServer, real_hosts: Any, servers: Any, logs: Path, app_module: Any, deps: Any, tmp_path: Path
) -> None:
    a, b = real_hosts("kvm-ca", "kvm-cb")
    for host in (a, b):  # enrolled: each agent holds its own host's token (restart to read it)
        host.proc.stop()
        (host.tree.root / "token").write_text(host_token(KEY.encode(), host.host_id) + "\n")
    for host in (a, b):
        port = host.url.rsplit(":", 1)[1]
        host.proc = start_agent(host.tree.root / "agent.toml", logs, f"agent-{host.host_id}", "--port", port)
        assert agent_url(host.proc) == host.url
    key_file = tmp_path / "agent-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    with api.client("alice") as client:
        assert client.post("/api/v1/clusters", json=CLUSTER).status_code in (200, 201)
        for host_id, url in ((a.host_id, a.url), (b.host_id, b.url), ("kvm-cx", b.url)):
            body = {"id": host_id, "cluster": CLUSTER["id"], "agent_url": url}
            assert client.post("/api/v1/hosts", json=body).status_code == 201
    worker = start_worker(servers.env(AUTORECOVERY_AGENT_KEY_FILE=str(key_file)), logs, concurrency=2,
                          name="per-host")
    try:
        pair = ("kvm-ca", "kvm-cb")
        tick_until(app_module, deps, lambda: {shown(api, h)["status"] for h in pair} == {"up"},
                   "both hosts up with their own tokens")
        # kvm-cx is registered at kvm-cb's address: its credential opens nothing there.
        with deps.db.transaction() as conn:
            query = "SELECT agent_reachable, error FROM reports WHERE host_id = 'kvm-cx'"
            row = conn.execute(query).fetchone()
        assert row is not None and row["agent_reachable"] is False and "HTTP 401" in row["error"], row
        assert shown(api, "kvm-cx")["status"] != "up"
        assert [r["fence"] for r in b.inits()] == [1] and b.highest_fence() == 1
        assert shown(api, "kvm-cb")["status"] == "up"
    finally:
        worker.stop()
    assert "Traceback" not in worker.log(), worker.log()[-6000:]
    assert KEY not in worker.log() and host_token(KEY.encode(), "kvm-ca") not in worker.log()
