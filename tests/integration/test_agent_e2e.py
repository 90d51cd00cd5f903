"""The product against real agents (``autorecovery agent`` on libvirt's test driver), end to end.

A real worker, ticks through the broker, the API process over HTTP, and one agent process per
host on a tree of real files (pools on temporary directories). A test:/// node's pools belong to
the agent's own connection, so a pool is broken from outside by removing its target directory.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.api_fixtures import ApiServer, audit
from tests.integration.conftest import host_status, send_ticks
from tests.support.hostagent import AUTH, TOKEN, HostTree, agent_url, make_tree, require_libvirt, start_agent
from tests.support.processes import Proc, start_worker, wait_for

pytest_plugins = ("tests.integration.api_fixtures",)

CLUSTER = {
    "id": "c-kvm",
    "required_networks": ["ovirtmgmt"],
    "storage_domains": ["sd-1"],
    "min_version": "4.5",
    "cpu_flags": ["vmx"],
}
#: Short lock and limits so that a frozen holder's lock expires and is reaped quickly.
FAST = {
    "AUTORECOVERY_INIT_TIMEOUT_S": "1.5",
    "AUTORECOVERY_ACTIVATION_SOFT_LIMIT_S": "2",
    "AUTORECOVERY_ACTIVATION_TIME_LIMIT_S": "3",
    "AUTORECOVERY_LOCK_TTL_S": "4",
    # A reaped holder's host is held this long (its init may have been sent): short here.
    "AUTORECOVERY_INIT_MAX_S": "6",
}


@dataclass
class RealHost:
    """One host: its file tree and its agent process."""

    host_id: str
    tree: HostTree
    proc: Proc
    url: str

    def state(self) -> dict[str, Any]:
        """The agent's persisted protocol state: highest fences and init records."""
        path = self.tree.root / "state" / "state.json"
        return dict(json.loads(path.read_text())) if path.exists() else {}  # none until a first save

    def inits(self) -> list[dict[str, Any]]:
        """The host inits the agent accepted, oldest first."""
        records = [r for r in self.state().get("records", []) if r["scope"] == "init"]
        return sorted(records, key=lambda r: r["started_at"])

    def highest_fence(self) -> int:
        """The highest init fence the agent accepted."""
        return int(self.state().get("fences", {}).get("init", 0))

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the agent with its token."""
        return httpx.request(method, self.url + path, headers=AUTH, timeout=10.0, **kwargs)


def overlaps(records: list[dict[str, Any]]) -> int:
    """Count pairs of init records whose running intervals intersect."""
    never = datetime.max.replace(tzinfo=UTC)  # a record still running
    spans = [
        (datetime.fromisoformat(r["started_at"]),
         datetime.fromisoformat(r["ended_at"]) if r["ended_at"] else never)
        for r in records
    ]
    return sum(1 for i, (a1, b1) in enumerate(spans) for a2, b2 in spans[i + 1:] if a1 < b2 and a2 < b1)


@pytest.fixture
def real_hosts(tmp_path: Path, logs: Path) -> Iterator[Callable[..., list[RealHost]]]:
    """Start one agent process per host id on its own tree; stopped after the test."""
    require_libvirt()
    started: list[RealHost] = []

    def start(*host_ids: str) -> list[RealHost]:
        for host_id in host_ids:
            tree = make_tree(tmp_path / host_id)
            proc = start_agent(tree.write_config(host_id=host_id), logs, f"agent-{host_id}")
            started.append(RealHost(host_id, tree, proc, agent_url(proc)))
        return started[-len(host_ids):]

    yield start
    for host in started:
        host.proc.stop()
        assert "Traceback" not in host.proc.log(), host.proc.log()[-4000:]


@pytest.fixture
def product_env(tmp_path: Path, servers: Any) -> Callable[..., dict[str, str]]:
    """The worker's environment with the agent token file (mode 0600) set."""
    token_file = tmp_path / "agent-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)

    def env(**overrides: str) -> dict[str, str]:
        return dict(servers.env(AUTORECOVERY_AGENT_TOKEN_FILE=str(token_file), **overrides))

    return env


def register(api: ApiServer, hosts: list[RealHost]) -> None:
    """Register the cluster and the hosts through the API as an admin."""
    with api.client("alice") as client:
        assert client.post("/api/v1/clusters", json=CLUSTER).status_code in (200, 201)
        for host in hosts:
            body = {"id": host.host_id, "cluster": CLUSTER["id"], "agent_url": host.url}
            answer = client.post("/api/v1/hosts", json=body)
            assert answer.status_code == 201, answer.text
            assert answer.json()["status"] == "unassigned"


def set_autorecovery(api: ApiServer, host_id: str, enabled: bool) -> None:
    """Turn a host's autorecovery on or off through the API."""
    with api.client("alice") as client:
        answer = client.put(f"/api/v1/hosts/{host_id}/autorecovery", json={"enabled": enabled})
    assert answer.status_code == 200, answer.text


def shown(api: ApiServer, host_id: str) -> dict[str, Any]:
    """``GET /api/v1/hosts/{id}`` as a viewer."""
    with api.client("vic") as client:
        answer = client.get(f"/api/v1/hosts/{host_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def tick_until(
    app_module: Any, deps: Any, done: Callable[[], bool], what: str, timeout_s: float = 40.0
) -> None:
    """Send ticks through the broker until ``done``."""

    def ticked() -> bool:
        send_ticks(app_module, deps)
        return done()

    wait_for(ticked, timeout_s, what, interval_s=0.3)


def test_two_real_agents_a_lost_pool_directory_takes_a_host_out_and_an_init_brings_it_back(
    api: ApiServer, real_hosts: Any, product_env: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    a, b = real_hosts("kvm-a", "kvm-b")
    register(api, [a, b])
    worker = start_worker(product_env(), logs, concurrency=2, name="e2e")
    try:
        # Both hosts: unassigned, a clean first report, an init each through the real agent.
        tick_until(app_module, deps, lambda: {shown(api, h.host_id)["status"] for h in (a, b)} == {"up"},
                   "both hosts up")
        first = {h.host_id: h.inits() for h in (a, b)}
        assert [[r["ok"] for r in first[h.host_id]] for h in (a, b)] == [[True], [True]]

        # The pool's directory of host a disappears: its report says sd-1 is unreachable.
        shutil.rmtree(a.tree.pool_dir("sd1"))
        tick_until(app_module, deps, lambda: shown(api, a.host_id)["status"] == "non_operational",
                   "host a out")
        out = shown(api, a.host_id)
        assert out["reason"] == "storage_domain_unreachable", out
        # The product's words name the domain; the agent's own (its report's details) the pool.
        assert "storage domain sd-1" in out["detail"] and "pool-sd1" in out["detail"], out
        details = a.call("GET", "/report").json()["details"]
        assert "pool-sd1" in details["storage_domain:sd-1"], details
        # While it stays unreachable, ticks never activate it: no init reaches the agent.
        for _ in range(3):
            send_ticks(app_module, deps)
        assert shown(api, a.host_id)["status"] == "non_operational"
        assert a.inits() == first[a.host_id]
        assert shown(api, b.host_id)["status"] == "up"

        # The directory is back: the next activation runs /init (which refreshes the pool) -> up.
        a.tree.pool_dir("sd1").mkdir(parents=True)
        tick_until(app_module, deps, lambda: shown(api, a.host_id)["status"] == "up", "host a back up")
        inits = a.inits()
        assert len(inits) == 2 and inits[1]["ok"] is True, inits
        assert inits[1]["fence"] > inits[0]["fence"]
        assert b.inits() == first[b.host_id], "host b was never touched again"
        # The agent answers for the activation that brought host a back.
        back = a.call("GET", f"/init/{inits[1]['activation_id']}").json()
        assert (back["status"], back["ok"]) == ("done", True)
        with deps.db.transaction() as conn:
            acts = conn.execute(
                "SELECT id, state, outcome FROM activations WHERE host_id = %s ORDER BY queued_at",
                (a.host_id,),
            ).fetchall()
        assert [(x["id"], x["state"]) for x in acts] == [(r["activation_id"], "done") for r in inits]
        # The audit log: up, out for the storage domain, then an activation that succeeded.
        events = [(e["event"], e["reason"]) for e in audit(deps, object_id=a.host_id)]
        out_at = events.index(("status_changed", "storage_domain_unreachable"))
        assert [e for e in events if e[0] == "activation_succeeded"] == [("activation_succeeded", "up")] * 2
        assert ("activation_succeeded", "up") in events[out_at:], events
        assert overlaps(inits) == 0 and overlaps(b.inits()) == 0
    finally:
        worker.stop()
    assert "Traceback" not in worker.log(), worker.log()[-6000:]


def _running_activation(deps: Any, host_id: str) -> tuple[str, int]:
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT id, fence FROM activations WHERE host_id = %s AND state = 'sending'", (host_id,)
        ).fetchone()
    assert row is not None and row["fence"] is not None, host_id
    return str(row["id"]), int(row["fence"])


@pytest.mark.parametrize("takeover", [False, True], ids=["alone", "after_a_takeover"])
def test_a_frozen_holder_reaped_past_its_lock_runs_no_init_on_a_real_agent(
    takeover: bool, api: ApiServer, real_hosts: Any, product_env: Any, logs: Path, app_module: Any,
    deps: Any,
) -> None:
    [host] = real_hosts("kvm-f")
    register(api, [host])
    ticker = start_worker(product_env(**FAST), logs, queues="monitoring", concurrency=1, name="ticker")
    # The first holder freezes itself (SIGSTOP) right before it calls the agent's init.
    frozen = start_worker(product_env(**FAST, AUTORECOVERY_FAILPOINTS="stop_before_init"), logs,
                          queues="activation", pool="solo", name="frozen")
    second = None
    try:
        send_ticks(app_module, deps)
        wait_for(lambda: "failpoint stop_before_init" in frozen.log(), 20, "the failpoint")
        stale_id, stale_fence = _running_activation(deps, host.host_id)
        assert host_status(deps, host.host_id)["status"] == "initializing"

        if not takeover:
            # No other activation after the reap: the frozen one is the only one that could init.
            set_autorecovery(api, host.host_id, False)
        # Past the lock TTL and the hard limit, a tick abandons it, bumps the fence in PostgreSQL
        # and tells the agent (POST /fence).
        time.sleep(float(FAST["AUTORECOVERY_ACTIVATION_TIME_LIMIT_S"])
                   + float(FAST["AUTORECOVERY_LOCK_TTL_S"]) + 0.5)
        assert deps.redis.get(f"autorecovery:lock:host:{host.host_id}") is None
        send_ticks(app_module, deps)
        assert host_status(deps, host.host_id)["reason"] == "activation_failed"
        wait_for(lambda: host.highest_fence() > stale_fence, 10, "the agent to learn the fence")
        assert host.inits() == []

        if takeover:
            second = start_worker(product_env(**FAST), logs, queues="activation", name="second")
            tick_until(app_module, deps, lambda: shown(api, host.host_id)["status"] == "up", "the takeover")
            [taken] = host.inits()
            assert taken["ok"] is True and taken["fence"] > stale_fence
        before = (host.inits(), host_status(deps, host.host_id))

        frozen.popen.send_signal(signal.SIGCONT)
        # Right before the agent call it asks Redis and PostgreSQL (not ours: no call); had it
        # called, the agent, told the new fence, would refuse (409 stale_fence). Either way the
        # holder writes nothing.
        wait_for(lambda: "wrote nothing" in frozen.log(), 20, "the resumed holder to finish")
        stopped_by = [w for w in ("no agent call", f"agent refused fence {stale_fence}") if w in frozen.log()]
        assert len(stopped_by) == 1, frozen.log()[-3000:]
        assert (host.inits(), host_status(deps, host.host_id)) == before
        assert host.call("GET", f"/init/{stale_id}").status_code == 404
        # Had its init been sent, the agent would have refused it: its fence is below the highest.
        refused = host.call("POST", "/init", json={"fence": stale_fence, "activation_id": stale_id})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "stale_fence" and refused.json()["highest"] > stale_fence
        assert host.inits() == before[0]

        if not takeover:
            # The host was never initialised; a fresh worker brings it up with a newer fence.
            frozen.stop()
            second = start_worker(product_env(**FAST), logs, queues="activation", name="second")
            set_autorecovery(api, host.host_id, True)
            tick_until(app_module, deps, lambda: shown(api, host.host_id)["status"] == "up", "host up")
            [fresh] = host.inits()
            assert fresh["activation_id"] != stale_id and fresh["fence"] > stale_fence
        assert overlaps(host.inits()) == 0
    finally:
        for proc in (frozen, ticker, second):
            if proc is not None:
                proc.stop()


def test_a_stopped_pool_is_repaired_by_an_automatic_activation(
    api: ApiServer, tmp_path: Path, product_env: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    """A stopped pool whose directory is there: the agent marks it repairable, the product repairs.

    The agent runs in this process (real code, real HTTP) so that the test can stop the pool
    through the agent's own libvirt connection, which a test:/// node requires.
    """
    require_libvirt()
    from tests.hostagent.conftest import serve_agent

    tree = make_tree(tmp_path / "kvm-s")
    with serve_agent(tree.config(host_id="kvm-s")) as agent:
        with api.client("alice") as admin:
            assert admin.post("/api/v1/clusters", json=CLUSTER).status_code in (200, 201)
            body = {"id": "kvm-s", "cluster": CLUSTER["id"], "agent_url": agent.url}
            assert admin.post("/api/v1/hosts", json=body).status_code == 201
        worker = start_worker(product_env(), logs, concurrency=2, name="stopped-pool")
        try:
            tick_until(app_module, deps, lambda: shown(api, "kvm-s")["status"] == "up", "the host up")
            assert agent.client().get(f"/init/{_only_activation(deps, 'kvm-s')}").json()["ok"] is True

            agent.conn.storagePoolLookupByName("pool-sd1").destroy()
            agent.agent.looks.refresh()  # the next snapshot (the agent takes one every 2 s anyway)
            assert agent.client().get("/report").json()["repairable"] == ["storage_domain:sd-1"]
            # One tick takes the host out and sends the repair; the init starts the pool.
            tick_until(app_module, deps, lambda: _activation_count(deps, "kvm-s") == 2, "the repair")
            wait_for(lambda: shown(api, "kvm-s")["status"] == "up", 20, "the host repaired")
            assert agent.conn.storagePoolLookupByName("pool-sd1").isActive() == 1
            with deps.db.transaction() as conn:
                rows = conn.execute(
                    "SELECT event, actor, reason FROM audit_log WHERE object_id = 'kvm-s' ORDER BY id"
                ).fetchall()
            events = [(r["event"], r["actor"], r["reason"]) for r in rows]
            assert ("status_changed", "auto", "storage_domain_unreachable") in events
            assert ("activation_queued", "auto", "repair") in events
            # No admin acted: every activation was the product's own.
            assert not [e for e in events if e[0].startswith("activation") and e[1] != "auto"]
        finally:
            worker.stop()


def _only_activation(deps: Any, host_id: str) -> str:
    with deps.db.transaction() as conn:
        [row] = conn.execute("SELECT id FROM activations WHERE host_id = %s", (host_id,)).fetchall()
    return str(row["id"])


def _activation_count(deps: Any, host_id: str) -> int:
    with deps.db.transaction() as conn:
        row = conn.execute("SELECT count(*) AS n FROM activations WHERE host_id = %s", (host_id,)).fetchone()
    return int(row["n"]) if row else 0
