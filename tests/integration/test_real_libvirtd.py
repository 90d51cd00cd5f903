"""The product end to end against agents on a real libvirtd (``qemu:///system``): the real tier.

A real ``libvirtd`` (QEMU driver, Debian's packages; see ``tests.support.libvirtd``), a real
worker, ticks through the broker, the API over HTTP, and three agent processes:

- ``kvm-a`` and ``kvm-b`` on the real libvirtd, each with its own ``dir`` pool and isolated
  network (names prefixed by the host), so a fault on one object is a fault of one host;
- ``kvm-c`` on libvirt's test driver: a host whose libvirt is not the one stopped or hung.
  Two hosts on one machine share one libvirtd, so stopping or hanging it takes both ``kvm-a``
  and ``kvm-b``; ``kvm-c`` shows that nothing else is affected (a second libvirtd instance
  would need its own /run/libvirt state, which the QEMU system driver does not let us move).

In CI this tier fails, never skips, without libvirtd (``.ci/run`` installs it).
"""

from __future__ import annotations

import grp
import os
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api_fixtures import ApiServer
from tests.integration.test_agent_e2e import product_env, shown, tick_until  # noqa: F401 - fixture
from tests.support.hostagent import AUTH, agent_url, make_tree, require_libvirt, start_agent
from tests.support.libvirtd import PREFIX, Libvirtd, running_libvirtd
from tests.support.processes import Proc, start_worker, wait_for

pytest_plugins = ("tests.integration.api_fixtures",)

CLUSTER = {
    "id": "c-real",
    "required_networks": ["vmnet"],
    "storage_domains": ["sd-1"],
    "min_version": "4.5",
    "cpu_flags": [],
}
LIBVIRT_TIMEOUT_S = 1.0
REAL = ("kvm-a", "kvm-b")


@dataclass
class Agent:
    """One host's agent process, and for a real host its pool directory and object names."""

    host_id: str
    proc: Proc
    url: str
    pool_dir: Path | None = None
    #: A node of the real kvm device (same major/minor as /dev/kvm) whose mode a test may change.
    kvm_device: Path = Path("/dev/kvm")

    @property
    def pool(self) -> str:
        return f"{PREFIX}{self.host_id}-sd1"

    @property
    def network(self) -> str:
        return f"{PREFIX}{self.host_id}-net"

    def report(self) -> tuple[dict[str, Any], float]:
        """The agent's report and how long it took to answer."""
        started = time.monotonic()
        answer = httpx.get(self.url + "/report", headers=AUTH, timeout=10.0)
        assert answer.status_code == 200, answer.text
        return answer.json(), time.monotonic() - started


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Libvirtd]:
    """One real libvirtd for the module (its objects are made per test)."""
    require_libvirt()
    root = tmp_path_factory.mktemp("libvirtd")
    with running_libvirtd(root / "run", root / "logs") as found:
        yield found


def _kvm_node(folder: Path) -> Path:
    """A device node of the machine's kvm (root:kvm, 0660 as udev makes /dev/kvm) for one agent."""
    folder.mkdir(parents=True, exist_ok=True)
    node = folder / "kvm"
    os.mknod(node, 0o660 | stat.S_IFCHR, os.stat("/dev/kvm").st_rdev)
    os.chown(node, 0, grp.getgrnam("kvm").gr_gid)
    node.chmod(0o660)
    return node


def _real_config(root: Path, host_id: str, uri: str, agent: Agent) -> Path:
    state = root / "state"
    token = root / "token"
    path = root / "agent.toml"
    from tests.support.hostagent import TOKEN

    token.write_text(TOKEN + "\n")
    token.chmod(0o600)
    path.write_text(
        f"""host_id = "{host_id}"
state_dir = "{state}"
token_file = "{token}"
version = "4.5.2"

[server]
bind = "127.0.0.1"
port = 0

[libvirt]
uri = "{uri}"
timeout_s = {LIBVIRT_TIMEOUT_S}

[probes]
kvm_device = "{agent.kvm_device}"
storage_timeout_s = 1.0
period_s = 0.5
# This machine's KVM is paravirtual (kvm_pvm): usable, with no vmx/svm in /proc/cpuinfo.
cpu_virt_flags = []

[networks.vmnet]
libvirt_network = "{agent.network}"

[storage_domains.sd-1]
pool = "{agent.pool}"
"""
    )
    return path


@dataclass
class Fleet:
    """The three agents, the worker, and the API, with the hosts registered and up."""

    agents: dict[str, Agent]
    api: ApiServer
    app_module: Any
    deps: Any
    daemon: Libvirtd

    def status(self, host_id: str) -> dict[str, Any]:
        return shown(self.api, host_id)

    def tick_until(self, done: Any, what: str, timeout_s: float = 60.0) -> None:
        tick_until(self.app_module, self.deps, done, what, timeout_s)

    def all_up(self) -> bool:
        return all(self.status(h)["status"] == "up" for h in self.agents)

    def inits(self, host_id: str) -> int:
        with self.deps.db.transaction() as conn:
            row = conn.execute(
                "SELECT count(*) AS n FROM activations WHERE host_id = %s", (host_id,)
            ).fetchone()
        return int(row["n"]) if row else 0

    def audit(self, host_id: str) -> list[tuple[str, str, str]]:
        with self.deps.db.transaction() as conn:
            rows = conn.execute(
                "SELECT event, actor, coalesce(reason, '') AS reason FROM audit_log "
                "WHERE object_id = %s ORDER BY id",
                (host_id,),
            ).fetchall()
        return [(r["event"], r["actor"], r["reason"]) for r in rows]


@pytest.fixture
def fleet(
    daemon: Libvirtd,
    tmp_path: Path,
    api: ApiServer,
    product_env: Any,  # noqa: F811 - the fixture imported above
    logs: Path,
    app_module: Any,
    deps: Any,
) -> Iterator[Fleet]:
    agents: dict[str, Agent] = {}
    worker: Proc | None = None
    try:
        for host_id in REAL:
            agent = Agent(host_id, proc=None, url="", pool_dir=tmp_path / host_id / "sd1")  # type: ignore[arg-type]
            assert agent.pool_dir is not None
            agent.kvm_device = _kvm_node(tmp_path / host_id)
            daemon.define_dir_pool(agent.pool, agent.pool_dir)
            daemon.define_isolated_network(agent.network, f"ar{host_id[-1]}{int(time.time()) % 100000}")
            (tmp_path / host_id).mkdir(exist_ok=True)
            config = _real_config(tmp_path / host_id, host_id, daemon.uri, agent)
            agent.proc = start_agent(config, logs, f"agent-{host_id}")
            agent.url = agent_url(agent.proc)
            agents[host_id] = agent
        tree = make_tree(tmp_path / "kvm-c")
        proc = start_agent(tree.write_config(host_id="kvm-c"), logs, "agent-kvm-c")
        agents["kvm-c"] = Agent("kvm-c", proc, agent_url(proc))
        with api.client("alice") as admin:
            assert admin.post("/api/v1/clusters", json=CLUSTER).status_code in (200, 201)
            for agent in agents.values():
                body = {"id": agent.host_id, "cluster": CLUSTER["id"], "agent_url": agent.url}
                assert admin.post("/api/v1/hosts", json=body).status_code == 201
        worker = start_worker(product_env(), logs, concurrency=2, name="real-libvirtd")
        found = Fleet(agents, api, app_module, deps, daemon)
        found.tick_until(found.all_up, "every host up")
        yield found
    finally:
        if worker is not None:
            worker.stop()
        for agent in agents.values():
            if agent.proc is not None:
                agent.proc.stop()
                assert "Traceback" not in agent.proc.log(), agent.proc.log()[-4000:]
        daemon.resume()
        if daemon.proc is None:
            daemon.start()
        daemon.clean()


def _repaired(fleet: Fleet, host_id: str, inits_before: int) -> None:
    """One more activation, audited as a repair by the product alone, and the host up."""
    fleet.tick_until(lambda: fleet.inits(host_id) == inits_before + 1, f"the repair of {host_id}")
    wait_for(lambda: fleet.status(host_id)["status"] == "up", 30, f"{host_id} repaired")
    events = fleet.audit(host_id)
    assert ("activation_queued", "auto", "repair") in events
    assert not [e for e in events if e[0].startswith("activation") and e[1] != "auto"]


def test_a_destroyed_pool_is_repaired_and_one_whose_directory_is_gone_is_not(fleet: Fleet) -> None:
    a = fleet.agents["kvm-a"]
    before = {h: fleet.inits(h) for h in fleet.agents}
    with fleet.daemon.connection() as conn:
        conn.storagePoolLookupByName(a.pool).destroy()
    started = time.monotonic()
    _repaired(fleet, "kvm-a", before["kvm-a"])
    assert time.monotonic() - started < 30
    with fleet.daemon.connection() as conn:
        assert conn.storagePoolLookupByName(a.pool).isActive() == 1
    assert {h: fleet.inits(h) for h in ("kvm-b", "kvm-c")} == {
        "kvm-b": before["kvm-b"],
        "kvm-c": before["kvm-c"],
    }

    # The pool's directory removed: out, and never an init until the directory is back.
    inits = fleet.inits("kvm-a")
    with fleet.daemon.connection() as conn:
        conn.storagePoolLookupByName(a.pool).destroy()
    assert a.pool_dir is not None
    shutil.rmtree(a.pool_dir)
    fleet.tick_until(
        lambda: fleet.status("kvm-a")["status"] == "non_operational", "kvm-a out for its storage"
    )
    for _ in range(4):
        fleet.tick_until(lambda: True, "a tick")
        time.sleep(0.5)
    shown_a = fleet.status("kvm-a")
    assert shown_a["reason"] == "storage_domain_unreachable"
    assert shown_a["why_not_recovered"]["code"] == "has_problems"
    assert fleet.inits("kvm-a") == inits
    a.pool_dir.mkdir(parents=True)
    _repaired(fleet, "kvm-a", inits)
    assert fleet.all_up()


def test_a_destroyed_isolated_network_is_repaired(fleet: Fleet) -> None:
    b = fleet.agents["kvm-b"]
    before = fleet.inits("kvm-b")
    with fleet.daemon.connection() as conn:
        conn.networkLookupByName(b.network).destroy()
    _repaired(fleet, "kvm-b", before)
    with fleet.daemon.connection() as conn:
        assert conn.networkLookupByName(b.network).isActive() == 1
    assert fleet.status("kvm-a")["status"] == "up"


def _gate(fleet: Fleet) -> Any:
    with fleet.api.client("vic") as client:
        answer = client.get("/api/v1/safety")
    assert answer.status_code == 200, answer.text
    state = answer.json()
    assert state["silent_hosts"] == 0, state
    return state["gate"]


def test_libvirtd_stopped_reads_kvm_not_running_then_restarted_comes_back(fleet: Fleet) -> None:
    fleet.daemon.stop()
    fleet.tick_until(
        lambda: all(fleet.status(h)["status"] == "non_operational" for h in REAL), "the real hosts out"
    )
    for host_id in REAL:
        shown_host = fleet.status(host_id)
        assert shown_host["reason"] == "kvm_not_running", shown_host
        assert "libvirt" in shown_host["detail"], shown_host["detail"]
        report, took_s = fleet.agents[host_id].report()
        assert report["kvm"] is False and report["version"] == "4.5.2" and took_s < 1.0
    assert fleet.status("kvm-c")["status"] == "up"
    assert _gate(fleet) is None  # kvm_not_running is a host's fault, not silence
    fleet.daemon.start()
    fleet.tick_until(fleet.all_up, "every host up again")


def test_libvirtd_hung_affects_only_its_hosts_and_reports_stay_fast(fleet: Fleet) -> None:
    fleet.daemon.pause()
    try:
        fleet.tick_until(
            lambda: all(fleet.status(h)["reason"] == "kvm_not_running" for h in REAL), "the real hosts out"
        )
        for host_id in REAL:
            detail = fleet.status(host_id)["detail"]
            assert f"does not answer within {LIBVIRT_TIMEOUT_S:g} s" in detail, detail
            slowest = max(fleet.agents[host_id].report()[1] for _ in range(5))
            assert slowest < 0.5, slowest  # from the snapshot, never waiting for libvirt
        assert fleet.status("kvm-c")["status"] == "up"
        assert _gate(fleet) is None
        # An admin's forced init while libvirtd hangs: every libvirt call of it is bounded.
        started = time.monotonic()
        with fleet.api.client("alice") as admin:
            answer = admin.post("/api/v1/hosts/kvm-a/activate", params={"force": "true", "wait_s": "30"})
        assert time.monotonic() - started < 25, answer.text
        assert answer.status_code in (200, 409), answer.text
        assert fleet.status("kvm-a")["status"] == "non_operational"
    finally:
        fleet.daemon.resume()
    fleet.tick_until(fleet.all_up, "every host up again", timeout_s=90)


def test_a_kvm_device_qemu_cannot_open_reads_kvm_not_running_with_the_reason(fleet: Fleet) -> None:
    a = fleet.agents["kvm-a"]
    a.kvm_device.chmod(0o600)  # root only: QEMU's user (libvirt-qemu, group kvm) cannot open it
    fleet.tick_until(lambda: fleet.status("kvm-a")["status"] == "non_operational", "kvm-a out")
    shown_a = fleet.status("kvm-a")
    assert shown_a["reason"] == "kvm_not_running"
    assert "cannot be opened read-write by QEMU's user libvirt-qemu" in shown_a["detail"], shown_a
    assert shown_a["why_not_recovered"]["code"] == "has_problems"
    assert fleet.status("kvm-b")["status"] == "up"
    a.kvm_device.chmod(0o660)
    fleet.tick_until(lambda: fleet.status("kvm-a")["status"] == "up", "kvm-a up again")
