"""Slow inits on real agents (``autorecovery agent`` on libvirt's test driver): never two at once.

The real-agent half of ``test_slow_init.py``: two agent processes whose init takes longer than
``AUTORECOVERY_INIT_TIMEOUT_S`` (the agent's ``[testing] init_delay_s``), two worker processes,
duplicate ticks, and every pool process killed while an init runs. No task waits for an init
(the agent answers at once that it runs it, ``Prefer: respond-async``); later steps ask the agent
(``GET /init/{activation_id}``) instead of counting a failure or sending another init, a killed
step is redelivered, and every host comes up.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from autorecovery.services.fleet import HostSpec
from harness.sim.record import InitCall, find_overlaps
from models.domain import Cluster
from tests.integration.conftest import host_status, send_ticks, statuses
from tests.integration.test_slow_init import INIT_DELAY_S, SLOW
from tests.support.hostagent import AUTH, TOKEN, agent_url, make_tree, require_libvirt, start_agent
from tests.support.processes import Proc, start_worker, wait_for

CLUSTER = Cluster(
    id="c-slow",
    required_networks=frozenset({"ovirtmgmt", "vmnet", "storage"}),
    storage_domains=frozenset({"sd-1", "sd-2"}),
    min_version="4.5",
    cpu_flags=frozenset({"vmx"}),
)
HOSTS = ("kvm-a", "kvm-b")


@dataclass
class Agent:
    """One real agent process serving one host."""

    host_id: str
    proc: Proc
    url: str

    def get(self, path: str) -> httpx.Response:
        """Call the agent with the fleet's token."""
        return httpx.get(self.url + path, headers=AUTH, timeout=10.0)

    def running_init(self) -> dict[str, Any] | None:
        """The init its report says runs on the host now, if any."""
        init: dict[str, Any] | None = self.get("/report").json()["init"]
        return init

    def started(self) -> list[str]:
        """The activation ids of every init the agent started, from its log (one line each)."""
        return re.findall(r": init (\S+) started with fence", self.proc.log())


@pytest.fixture
def agents(tmp_path: Path, logs: Path) -> Iterator[dict[str, Agent]]:
    """Start one slow agent process per host; stop them after the test."""
    require_libvirt()
    started: dict[str, Agent] = {}
    try:
        for host_id in HOSTS:
            tree = make_tree(tmp_path / host_id)
            config = tree.write_config(f"\n[testing]\ninit_delay_s = {INIT_DELAY_S}\n", host_id=host_id)
            proc = start_agent(config, logs, f"slow-agent-{host_id}")
            started[host_id] = Agent(host_id, proc, agent_url(proc))
        yield started
    finally:
        for agent in started.values():
            agent.proc.stop()


def _token_file(root: Path) -> str:
    path = root / "agent-token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return str(path)


def _kill_the_init(app_module: Any, agents: dict[str, Agent], workers: list[Proc]) -> tuple[str, datetime]:
    """SIGKILL every pool process while an init runs on an agent; return its activation and when.

    No process waits for the init any more (it is a record, ``sent``): whatever step of it was
    running dies with its process, and its message is requeued.
    """
    running: dict[str, str] = {}

    def an_init_runs() -> bool:
        for agent in agents.values():
            init = agent.running_init()
            if init is not None:
                running[agent.host_id] = init["activation_id"]
        return bool(running)

    wait_for(an_init_runs, 30, "an init on an agent", interval_s=0.1)
    host_id, activation_id = next(iter(running.items()))
    pids = [pid for w in workers for pid in w.children()]
    assert len(pids) == 4, pids
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return activation_id, datetime.now().astimezone()


def _agent_inits(deps: Any, agents: dict[str, Agent]) -> dict[str, list[dict[str, Any]]]:
    """Each host's inits, as its agent answers for every activation the product recorded."""
    with deps.db.transaction() as conn:
        acts = conn.execute("SELECT id, host_id FROM activations ORDER BY queued_at").fetchall()
    found: dict[str, list[dict[str, Any]]] = {h: [] for h in agents}
    for act in acts:
        answer = agents[act["host_id"]].get(f"/init/{act['id']}")
        if answer.status_code == 404:
            continue  # this activation sent no init
        assert answer.status_code == 200, answer.text
        found[act["host_id"]].append(answer.json())
    return found


def _overlaps(host_id: str, inits: list[dict[str, Any]]) -> int:
    calls = [
        InitCall(
            host_id,
            s["fence"],
            s["activation_id"],
            datetime.fromisoformat(s["started_at"]),
            None if s["ended_at"] is None else datetime.fromisoformat(s["ended_at"]),
            "ok" if s["ok"] else "failed",
        )
        for s in inits
    ]
    return len(find_overlaps(calls))


def test_slow_inits_on_real_agents_with_a_worker_killed_mid_init_never_overlap_and_every_host_ends_up(
    agents: dict[str, Agent],
    servers: Any,
    logs: Path,
    tmp_path: Path,
    app_module: Any,
    deps: Any,
    fleet_service: Any,
) -> None:
    fleet_service.register_cluster(CLUSTER, "test")
    fleet_service.register_hosts([HostSpec(a.host_id, CLUSTER.id, a.url) for a in agents.values()], "test")
    env = servers.env(AUTORECOVERY_AGENT_TOKEN_FILE=_token_file(tmp_path), **SLOW)
    workers = [start_worker(env, logs, concurrency=2, name=f"slowagent{i}") for i in range(2)]
    try:
        send_ticks(app_module, deps, copies=2)  # duplicate beats
        killed, killed_at = _kill_the_init(app_module, agents, workers)

        def all_up() -> bool:
            send_ticks(app_module, deps, copies=2)
            return set(statuses(deps).values()) == {"up"}

        wait_for(all_up, 60, "every host up", interval_s=0.5)

        inits = _agent_inits(deps, agents)
        # The pool processes died while the agent ran its init; the init went on, and ended ok.
        [ran] = [s for per_host in inits.values() for s in per_host if s["activation_id"] == killed]
        assert (ran["status"], ran["ok"]) == ("done", True), ran
        assert datetime.fromisoformat(ran["ended_at"]) > killed_at, (ran, killed_at)
        for host_id, per_host in inits.items():
            # Each init outlived the 1 s init timeout, and the product asked instead of sending another.
            assert [s["ok"] for s in per_host] == [True], (host_id, per_host)
            took = datetime.fromisoformat(per_host[0]["ended_at"]) - datetime.fromisoformat(
                per_host[0]["started_at"]
            )
            assert took.total_seconds() >= INIT_DELAY_S > float(SLOW["AUTORECOVERY_INIT_TIMEOUT_S"]), took
            assert _overlaps(host_id, per_host) == 0, per_host
            # Every init the agent started belongs to one of the product's activations, once.
            assert agents[host_id].started() == [s["activation_id"] for s in per_host], host_id
        with deps.db.transaction() as conn:
            asked = conn.execute(
                "SELECT object_id, details FROM audit_log WHERE event = 'init_outcome_asked'"
            ).fetchall()
        assert {a["object_id"] for a in asked} == set(HOSTS)
        assert all("asked the agent, done: ok" in str(a["details"]) for a in asked), asked
        for host_id in HOSTS:
            row = host_status(deps, host_id)
            assert (row["failures"], row["quarantined_at"], row["init_hold_until"]) == (0, None, None), row
    finally:
        for proc in workers:
            proc.stop()
