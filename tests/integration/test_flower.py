"""A real Flower process on the test broker shows the API's manual activation, behind basic auth."""

from __future__ import annotations

import ast
import json
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from autorecovery.adapters import keys
from tests.integration.api_fixtures import ApiServer, api, free_port  # noqa: F401 - fixture
from tests.integration.conftest import host_status, settle, statuses
from tests.support.processes import Proc, spawn, start_beat, wait_for
from tests.support.servers import Servers

ACTIVATION_TASK = "autorecovery.init_vds_on_up"
TICK_TASK = "autorecovery.monitoring_tick"
BATCH_TASK = "autorecovery.monitoring_batch"


@dataclass
class Flower:
    """A running Flower, its URL and its one user."""

    base_url: str
    auth: tuple[str, str]
    proc: Proc

    def get(self, path: str, auth: tuple[str, str] | None = None, **params: str) -> httpx.Response:
        """GET a Flower URL, as the configured user unless ``auth`` says otherwise."""
        return httpx.get(self.base_url + path, params=params, auth=auth or self.auth, timeout=10.0)


@pytest.fixture(scope="module")
def flower(servers: Servers, logs: Path, worker: Proc) -> Iterator[Flower]:
    """``celery -A workers flower`` with basic auth, once it receives the worker's events.

    The credentials come from FLOWER_BASIC_AUTH, as in deploy/ (a ``--basic-auth`` argument
    would show the password in ``ps``).
    """
    port = free_port()
    auth = ("operator", secrets.token_urlsafe(12))
    proc = spawn([sys.executable, "-m", "celery", "-A", "workers", "flower", f"--port={port}",
                  "--address=127.0.0.1"],
                 servers.env(FLOWER_BASIC_AUTH=f"{auth[0]}:{auth[1]}"), logs, "flower")
    running = Flower(f"http://127.0.0.1:{port}", auth, proc)

    def hears_the_worker() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"flower exited early:\n{proc.log()[-4000:]}")
        try:
            # Workers known from events (heartbeats): Flower's event receiver is listening.
            alive = running.get("/api/workers", status="true")
        except httpx.HTTPError:
            return False
        return alive.status_code == 200 and any(alive.json().values())

    try:
        wait_for(hears_the_worker, 60, "Flower to receive the worker's events", interval_s=0.3)
        yield running
    finally:
        proc.stop()
    assert "Traceback" not in proc.log(), proc.log()[-6000:]


def test_the_manual_activation_is_in_flower_with_its_host_trigger_and_actor(
    sim: Any, worker: Proc, deps: Any, api: ApiServer, flower: Flower  # noqa: F811 - fixture
) -> None:
    sim(hosts=2)
    with api.client("alice") as client:
        answer = client.post("/api/v1/hosts/h-0002/activate")
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    assert task_id == answer.json()["activation_id"]
    settle(deps)
    assert host_status(deps, "h-0002")["status"] == "up"

    info: dict[str, Any] = {}

    def finished_in_flower() -> bool:
        found = flower.get(f"/api/task/info/{task_id}")
        if found.status_code != 200:
            return False
        info.update(found.json())
        return info.get("state") == "SUCCESS"

    wait_for(finished_in_flower, 30, f"Flower to show task {task_id} succeeded")
    assert info["name"] == ACTIVATION_TASK
    assert info["worker"] and info["worker"].startswith("worker-")
    kwargs = ast.literal_eval(info["kwargs"])
    assert kwargs == {"host_id": "h-0002", "activation_id": task_id, "trigger": "manual",
                      "actor": "alice"}

    listed = flower.get("/api/tasks", taskname=ACTIVATION_TASK)
    assert listed.status_code == 200
    tasks = listed.json()
    assert task_id in tasks
    assert "'host_id': 'h-0002'" in tasks[task_id]["kwargs"]
    assert tasks[task_id]["name"] == ACTIVATION_TASK


def test_flower_refuses_requests_without_the_password(flower: Flower) -> None:
    for path in ("/api/tasks", "/api/workers", "/api/task/info/whatever", "/tasks", "/"):
        assert httpx.get(flower.base_url + path, timeout=10.0).status_code == 401, path
        wrong = flower.get(path, auth=(flower.auth[0], "not-the-password"))
        assert wrong.status_code == 401, path
    assert flower.get("/api/tasks").status_code == 200
    # The orchestrators' probe (deploy/kubernetes/flower.yaml) needs no credentials.
    probe = httpx.get(flower.base_url + "/healthcheck", timeout=10.0)
    assert (probe.status_code, probe.text) == (200, "OK")


def test_a_failed_activation_is_a_failure_in_flower_not_a_success(
    sim: Any, worker: Proc, deps: Any, api: ApiServer, flower: Flower  # noqa: F811 - fixture
) -> None:
    client = sim(hosts=2)
    client.inject("init_fail", hosts=["h-0001"], reason="kvm_not_running", detail="kvm module missing")
    with api.client("alice") as http:
        answer = http.post("/api/v1/hosts/h-0001/activate")
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]
    settle(deps)
    assert host_status(deps, "h-0001")["reason"] == "kvm_not_running"

    def finished(step_task_id: str) -> dict[str, Any]:
        info: dict[str, Any] = {}

        def in_flower() -> bool:
            found = flower.get(f"/api/task/info/{step_task_id}")
            if found.status_code != 200:
                return False
            info.update(found.json())
            return info.get("state") in ("SUCCESS", "FAILURE")

        wait_for(in_flower, 30, f"Flower to show task {step_task_id} finished")
        return info

    with deps.db.transaction() as conn:
        row = conn.execute("SELECT state, outcome FROM activations WHERE id = %s", (task_id,)).fetchone()
        steps = conn.execute(
            "SELECT step, task_id, outcome FROM activation_steps WHERE activation_id = %s ORDER BY id",
            (task_id,),
        ).fetchall()
    assert row is not None and (row["state"], row["outcome"]) == ("failed", "failed")
    # The first step (the activation's own task id) sent the init (v2: answered at once); the
    # step that closed the activation failed is the one Flower shows as a FAILURE.
    assert (steps[0]["step"], steps[0]["task_id"], steps[0]["outcome"]) == ("send", task_id, "sent")
    assert finished(task_id)["state"] == "SUCCESS"
    closing = steps[-1]
    assert (closing["step"], closing["outcome"]) == ("check", "failed")
    info = finished(closing["task_id"])
    assert info["state"] == "FAILURE", info
    assert info["name"] == "autorecovery.check_init"
    assert "ActivationFailed" in str(info.get("exception")), info
    assert "kvm module missing" in str(info.get("exception")), info
    kwargs = ast.literal_eval(info["kwargs"])  # every step names its host, activation, trigger, actor
    assert kwargs == {"host_id": "h-0001", "activation_id": task_id, "trigger": "manual", "actor": "alice"}
def test_beats_ticks_stay_out_of_flower_and_activations_stay_in(
    sim: Any, worker: Proc, deps: Any, flower: Flower, servers: Servers, logs: Path
) -> None:
    """Ticks every interval would push activations out of Flower's bounded task list."""
    sim(hosts=2)
    beat = start_beat(servers.env(), logs)
    try:
        wait_for(lambda: set(statuses(deps).values()) == {"up"}, 45, "the beat-driven recovery")
        ticked = deps.redis.llen(keys.tick_history())
        wait_for(lambda: deps.redis.llen(keys.tick_history()) >= ticked + 3, 30, "three more ticks")
    finally:
        beat.stop()
    tasks = flower.get("/api/tasks").json()
    names = {t.get("name") for t in tasks.values()}
    assert ACTIVATION_TASK in names
    assert names.isdisjoint({TICK_TASK, BATCH_TASK, "autorecovery.housekeeping"}), names
    assert not set(tasks) & ticks_sent(deps)


def ticks_sent(deps: Any) -> set[str]:
    """Task ids of the ticks the workers ran (from the tick history they publish)."""
    return {json.loads(raw)["task_id"] for raw in deps.redis.lrange(keys.tick_history(), 0, 99)}
