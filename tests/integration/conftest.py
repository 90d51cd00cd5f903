"""Fixtures of the integration suite: real servers, a real worker, the simulator over HTTP."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from autorecovery.adapters import keys
from autorecovery.settings import get_settings
from harness.sim import Fleet, SimulatorClient, start_in_thread
from tests.support.processes import Proc, start_worker, wait_for
from tests.support.servers import Servers, start_servers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """Real PostgreSQL and Redis (environment URLs, else embedded), with a fresh database."""
    found = start_servers(tmp_path_factory.mktemp("servers"))
    # The test process talks to the same servers as the worker it starts.
    os.environ.update(found.env())
    yield found
    found.close()


@pytest.fixture(scope="session")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where child processes write their logs."""
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def app_module(servers: Servers) -> Any:
    """The ``workers`` module, imported once the environment names the test servers.

    ``workers`` reads its settings when imported: one imported earlier in this session (a unit
    test run first) names other servers, so it is dropped, with its container, and imported again.
    """
    stale = [name for name in sys.modules if name == "workers" or name.startswith("workers.")]
    if stale:
        sys.modules["workers"].close_container()
        for name in stale:
            del sys.modules[name]
    get_settings.cache_clear()
    import workers

    return workers


@pytest.fixture(scope="session")
def deps(app_module: Any) -> Any:
    """The test process's own container (pool, Redis, services)."""
    return app_module.container()


@pytest.fixture(scope="session")
def fleet_service(deps: Any, app_module: Any) -> Any:
    """The operator commands, enqueuing through the real broker (the container's)."""
    return deps.fleet


@pytest.fixture(scope="module")
def worker(servers: Servers, logs: Path, app_module: Any) -> Iterator[Proc]:
    """A real ``celery worker`` with four prefork processes on both queues (one per module)."""
    proc = start_worker(servers.env(), logs, concurrency=4)
    yield proc
    proc.stop()


@pytest.fixture
def worker_with(servers: Servers, logs: Path) -> Iterator[Callable[..., Proc]]:
    """Start a worker whose settings differ from the suite's; stopped after the test.

    Tests that use it should not also use the module's shared ``worker``: both would consume.
    """
    started: list[Proc] = []

    def start(concurrency: int = 4, **overrides: str) -> Proc:
        proc = start_worker(servers.env(**overrides), logs, concurrency=concurrency, name="custom")
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(autouse=True)
def clean_state(request: pytest.FixtureRequest) -> Iterator[None]:
    """Empty the tables, the queues and our Redis keys before each integration test."""
    if "servers" not in request.fixturenames:
        yield
        return
    deps = request.getfixturevalue("deps")
    app_module = request.getfixturevalue("app_module")
    app_module.app.control.purge()
    with deps.db.transaction() as conn:
        conn.execute(
            "TRUNCATE audit_log, activations, reports, hosts, clusters, pauses, incidents, "
            "vm_runs, charges, sd_activations, storage_domains, ticks CASCADE"
        )
        conn.execute(
            "UPDATE observer SET last_full_tick_at = NULL, gate = NULL, silent_hosts = 0, "
            "observed_hosts = 0, updated_at = NULL"
        )
    for key in deps.redis.scan_iter(keys.PREFIX + "*"):
        deps.redis.delete(key)
    yield


@pytest.fixture
def sim(request: pytest.FixtureRequest, fleet_service: Any) -> Iterator[Callable[..., SimulatorClient]]:
    """Start a simulator in this process and register its fleet; call with Fleet.generate args.

    ``protocol=1`` serves v1 agents; ``token`` makes every agent route require it.
    """
    running: list[Any] = []
    clients: list[SimulatorClient] = []

    def start(hosts: int = 4, clusters: int = 1, token: str | None = None, **kwargs: Any) -> SimulatorClient:
        fleet = Fleet.generate(hosts=hosts, clusters=clusters, **kwargs)
        server = start_in_thread(fleet, token=token)
        running.append(server)
        client = SimulatorClient(server.base_url)
        clients.append(client)
        from harness.sim.register import register_fleet

        register_fleet(fleet_service, client.fleet(), actor="test")
        return client

    yield start
    for client in clients:
        client.close()
    for server in running:
        server.stop()


def housekeeping(app_module: Any, deps: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    """Send one housekeeping run through the broker and return its summary."""
    run_id = app_module.app.send_task(app_module.HOUSEKEEPING_TASK, queue="monitoring").id
    found: dict[str, Any] = {}

    def done() -> bool:
        raw = deps.redis.get(keys.last_housekeeping())
        found.clear()
        found.update(json.loads(raw) if raw else {})
        return found.get("run_id") == run_id

    wait_for(done, timeout_s, f"housekeeping run {run_id}")
    return found


def send_ticks(app_module: Any, deps: Any, copies: int = 1,
               timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Run the housekeeping, then send ``copies`` monitoring ticks at once; wait for all to finish.

    Beat sends both each interval; here the housekeeping (reaping, re-sends, fence pushes) ends
    before the ticks start, so that a test sees its effects in the same round.

    One tick runs per interval: copies sent together are duplicates, and all but one stop. When
    none ran (they came too soon after the previous tick), they are sent again. Returns the
    summaries of the round in which one ran.
    """
    deadline = time.monotonic() + timeout_s
    housekeeping(app_module, deps, timeout_s)
    while True:
        summaries = _tick_round(app_module, deps, copies, deadline - time.monotonic())
        if any(s.get("skipped") is None for s in summaries):
            return summaries
        time.sleep(0.2)


def _tick_round(app_module: Any, deps: Any, copies: int, timeout_s: float) -> list[dict[str, Any]]:
    ids = [app_module.app.send_task(app_module.TICK_TASK, queue="monitoring").id
           for _ in range(copies)]
    found: dict[str, dict[str, Any]] = {}

    def done() -> bool:
        for raw in deps.redis.lrange(keys.tick_history(), 0, 99):
            data = json.loads(raw)
            if data.get("task_id") in ids:
                found[data["task_id"]] = data
        return len(found) == len(ids)

    wait_for(done, max(timeout_s, 1.0), f"ticks {ids}")
    return [found[i] for i in ids]


@pytest.fixture
def tick(app_module: Any, deps: Any) -> Callable[..., dict[str, Any]]:
    """Send one monitoring tick to the worker through the broker and wait for it to finish."""

    def send(timeout_s: float = 30.0) -> dict[str, Any]:
        return send_ticks(app_module, deps, 1, timeout_s)[0]

    return send


def host_status(deps: Any, host_id: str) -> dict[str, Any]:
    """Return a host's row."""
    with deps.db.transaction() as conn:
        row = conn.execute("SELECT * FROM hosts WHERE id = %s", (host_id,)).fetchone()
    assert row is not None, host_id
    return dict(row)


def statuses(deps: Any) -> dict[str, str]:
    """Return every host's status."""
    with deps.db.transaction() as conn:
        rows = conn.execute("SELECT id, status FROM hosts").fetchall()
    return {r["id"]: r["status"] for r in rows}


def settle(deps: Any, timeout_s: float = 30.0) -> None:
    """Wait until no activation (of a host or a storage domain) is in flight."""

    def idle() -> bool:
        with deps.db.transaction() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM activations WHERE state IN ('queued', 'sending', 'sent'))"
                " + (SELECT count(*) FROM sd_activations WHERE state IN ('queued', 'sending', 'sent'))"
                " AS n"
            ).fetchone()
        return row is not None and row["n"] == 0

    wait_for(idle, timeout_s, "activations to finish")
    time.sleep(0.05)


