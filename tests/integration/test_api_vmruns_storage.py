"""VM run reports, the placement ranking and storage domains over a real socket.

The API runs as its own process against the suite's PostgreSQL and Redis (``api_fixtures.py``);
the tests that need them add the module's Celery worker and the simulator. VM runs are posted
as a scheduler would, and by ``harness.sim.launcher.VmLauncher`` itself.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg import sql as pgsql

from cli.ops import Exit
from harness.sim.launcher import VmLauncher
from tests.integration.api_fixtures import ApiServer, audit, good_report, snapshot
from tests.integration.conftest import host_status, send_ticks, settle, statuses
from tests.support.processes import REPO, wait_for
from tests.support.servers import Servers

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)  # the ``api`` and ``fleet`` fixtures

#: Tables the suite's cleanup leaves alone (they hang off no host), emptied around each test here.
OWN_TABLES = ("vm_runs", "charges", "storage_domains", "sd_activations")


def _empty(deps: Any) -> None:
    with deps.db.transaction() as conn:
        conn.execute("TRUNCATE vm_runs, charges, sd_activations, storage_domains CASCADE")
        conn.execute("DELETE FROM pauses")


@pytest.fixture(autouse=True)
def own_tables(deps: Any) -> Iterator[None]:
    """No VM run, charge, storage domain or pause from another test, before or after this one."""
    _empty(deps)
    yield
    _empty(deps)


def state(deps: Any) -> dict[str, list[str]]:
    """Every row of the product's tables, VM runs, charges and storage domains included."""
    found = snapshot(deps)
    with deps.db.transaction() as conn:
        for table in OWN_TABLES:
            query = pgsql.SQL("SELECT t::text AS row FROM {} t").format(pgsql.Identifier(table))
            found[table] = sorted(r["row"] for r in conn.execute(query).fetchall())
    return found


def count(deps: Any, table: str) -> int:
    """Rows in one table."""
    with deps.db.transaction() as conn:
        query = pgsql.SQL("SELECT count(*) AS n FROM {}").format(pgsql.Identifier(table))
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row["n"])


def attempts(*specs: str) -> list[dict[str, Any]]:
    """Attempts from ``host:ok`` / ``host:failed`` strings."""
    out = []
    for spec in specs:
        host, outcome = spec.split(":")
        ok = outcome == "ok"
        out.append({"host": host, "ok": ok, "error": None if ok else "qemu-kvm: failed to start"})
    return out


def up_with_load(deps: Any, fleet_service: Any, loads: dict[str, tuple[int, int]]) -> None:
    """Put hosts up with a fresh report of (VMs running, free GiB), as a tick would leave them."""
    with deps.db.transaction() as conn:
        conn.execute("UPDATE hosts SET status = 'up', reason = NULL, detail = NULL")
    for host_id, (vms, free_gb) in loads.items():
        report = good_report(host_id, vms_running=vms, mem_free_mb=free_gb * 1024)
        fleet_service.receive_report(host_id, report, "agent")


def ranking(api: ApiServer, cluster: str = "c-1") -> list[dict[str, Any]]:
    """The cluster's placement, as a viewer reads it."""
    with api.client("vic") as http:
        answer = http.get(f"/api/v1/clusters/{cluster}/placement")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["cluster"] == cluster
    hosts: list[dict[str, Any]] = body["hosts"]
    return hosts


def all_up(app_module: Any, deps: Any) -> None:
    """Tick until every host is up."""
    for _ in range(5):
        send_ticks(app_module, deps)
        settle(deps)
        if set(statuses(deps).values()) == {"up"}:
            return
    raise AssertionError(statuses(deps))


def scrape(api: ApiServer) -> str:
    """The metrics text, read with the viewer's token."""
    with api.client("vic") as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200, answer.text
    return answer.text


# -- Who may write ---------------------------------------------------------------------------

WRITES: list[tuple[str, str, dict[str, Any], str]] = [
    (
        "POST",
        "/api/v1/vm-runs",
        {"json": {"vm_id": "vm-1", "attempts": attempts("h-0001:failed", "h-0002:ok")}},
        "h-0001",
    ),
    ("POST", "/api/v1/storage-domains/sd-1/activate", {}, "sd-1"),
    ("PUT", "/api/v1/storage-domains/sd-1/autorecovery", {"json": {"enabled": False}}, "sd-1"),
    ("POST", "/api/v1/storage-domains/sd-1/maintenance", {"json": {"reason": "array firmware"}}, "sd-1"),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "object_id"), WRITES, ids=[f"{m} {p}" for m, p, _, _ in WRITES]
)
def test_auth_matrix_on_the_new_writes(
    api: ApiServer, fleet: Any, deps: Any, method: str, path: str, kwargs: dict[str, Any], object_id: str
) -> None:
    up_with_load(deps, fleet, {"h-0001": (1, 30), "h-0002": (6, 20)})
    with deps.db.transaction() as conn:  # an inactive domain, so that an admin may activate it
        conn.execute("UPDATE storage_domains SET status = 'inactive' WHERE id = 'sd-1'")
    before = state(deps)
    for who, token, status in [
        (None, None, 401),
        (None, "not-a-token-" + "x" * 20, 401),
        (None, api.tokens["alice"] + "x", 401),
        ("vic", None, 403),
    ]:
        with api.client(who, token) as http:
            answer = http.request(method, path, **kwargs)
        assert answer.status_code == status, (who, token, answer.text)
        body = answer.json()
        assert body["error"] == ("unauthorized" if status == 401 else "forbidden")
        assert set(body) >= {"error", "message", "field"}
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer")
    with api.client() as http:
        malformed = http.request(
            method, path, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 401
    with api.client("vic") as http:
        malformed = http.request(
            method, path, content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 403
    assert state(deps) == before, "a refused caller wrote something"

    with api.client("bob") as http:
        answer = http.request(method, path, **kwargs)
    assert 200 <= answer.status_code < 300, answer.text
    assert state(deps) != before
    entries = audit(deps, actor="bob")
    assert entries and {e["object_id"] for e in entries} == {object_id}


# -- Bad VM run reports ----------------------------------------------------------------------

GOOD = {"host": "h-0001", "ok": True, "error": None}
BAD_RUNS: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown host",
        {"vm_id": "vm-1", "attempts": attempts("h-0001:failed", "h-0009:ok")},
        "attempts[1].host",
    ),
    (
        "unknown first host",
        {"vm_id": "vm-1", "attempts": attempts("h-0009:failed", "h-0002:ok")},
        "attempts[0].host",
    ),
    ("empty attempts", {"vm_id": "vm-1", "attempts": []}, "attempts"),
    ("no attempts", {"vm_id": "vm-1"}, "attempts"),
    ("attempts not a list", {"vm_id": "vm-1", "attempts": GOOD}, "attempts"),
    ("too many attempts", {"vm_id": "vm-1", "attempts": [GOOD] * 21}, "attempts"),
    ("ok as a string", {"vm_id": "vm-1", "attempts": [{**GOOD, "ok": "true"}]}, "attempts[0].ok"),
    ("ok as a number", {"vm_id": "vm-1", "attempts": [GOOD, {**GOOD, "ok": 1}]}, "attempts[1].ok"),
    ("host as a number", {"vm_id": "vm-1", "attempts": [{**GOOD, "host": 1}]}, "attempts[0].host"),
    ("error as a list", {"vm_id": "vm-1", "attempts": [{**GOOD, "error": ["x"]}]}, "attempts[0].error"),
    ("vm_id as a number", {"vm_id": 7, "attempts": [GOOD]}, "vm_id"),
    ("no vm_id", {"attempts": [GOOD]}, "vm_id"),
    ("unknown field", {"vm_id": "vm-1", "attempts": [GOOD], "cluster": "c-1"}, "cluster"),
    ("unknown attempt field", {"vm_id": "vm-1", "attempts": [{**GOOD, "at": "now"}]}, "attempts[0].at"),
]


@pytest.mark.parametrize(("body", "field"), [(b, f) for _, b, f in BAD_RUNS], ids=[n for n, _, _ in BAD_RUNS])
def test_bad_vm_run_reports_are_422_naming_the_field_and_write_nothing(
    api: ApiServer, fleet: Any, deps: Any, body: dict[str, Any], field: str
) -> None:
    up_with_load(deps, fleet, {"h-0001": (1, 30), "h-0002": (6, 20)})
    before = state(deps)
    with api.client("alice") as http:
        answer = http.post("/api/v1/vm-runs", json=body)
    assert answer.status_code == 422, answer.text
    found = answer.json()
    assert (found["error"], found["field"]) == ("invalid_input", field), found
    assert found["message"].startswith(field + ": ")
    assert state(deps) == before
    assert count(deps, "vm_runs") == 0 and count(deps, "charges") == 0


def test_a_body_that_is_not_json_or_not_an_object_writes_nothing(
    api: ApiServer, fleet: Any, deps: Any
) -> None:
    before = state(deps)
    with api.client("alice") as http:
        for content in (b"{not json", b"[]", b'"vm-1"', b"\xff\xfe"):
            answer = http.post(
                "/api/v1/vm-runs", content=content, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 422, (content, answer.text)
            assert answer.json()["field"] == "body"
    assert state(deps) == before


# -- Error state and placement ---------------------------------------------------------------


def test_three_charged_runs_put_a_host_in_error_and_out_of_the_ranking(
    api: ApiServer, fleet: Any, deps: Any
) -> None:
    up_with_load(deps, fleet, {"h-0001": (1, 30), "h-0002": (6, 20), "h-0003": (12, 8)})
    assert [h["host_id"] for h in ranking(api)] == ["h-0001", "h-0002", "h-0003"]

    answers = []
    with api.client("alice") as http:
        for i in range(3):
            body = {"vm_id": f"vm-{i}", "attempts": attempts("h-0001:failed", "h-0002:ok")}
            answer = http.post("/api/v1/vm-runs", json=body)
            assert answer.status_code == 201, answer.text
            answers.append(answer.json())
            if i == 0:  # one charge: the light host ranks below the busier clean one
                first = ranking(api)
                assert [h["host_id"] for h in first] == ["h-0002", "h-0001", "h-0003"]
                light = first[1]
                assert light["recent_charges"] == 1 and light["terms"]["recent_charges"] < 0
    assert [a["charged"] for a in answers] == [{"h-0001": 1}, {"h-0001": 2}, {"h-0001": 3}]
    assert [a["errored"] for a in answers] == [[], [], ["h-0001"]]
    until = datetime.fromisoformat(answers[-1]["error_until"])
    assert until > datetime.now(UTC)

    assert [h["host_id"] for h in ranking(api)] == ["h-0002", "h-0003"]
    row = host_status(deps, "h-0001")
    assert (row["status"], row["reason"]) == ("error", "vm_launch_failures")
    with api.client("vic") as http:
        shown = http.get("/api/v1/hosts/h-0001").json()
    assert shown["status"] == "error"
    charged = audit(deps, object_id="h-0001", event="charged")
    assert len(charged) == 3 and {e["actor"] for e in charged} == {"alice"}
    assert [e["details"]["vm_id"] for e in charged] == ["vm-0", "vm-1", "vm-2"]
    [entered] = [
        e
        for e in audit(deps, object_id="h-0001", event="status_changed")
        if e["details"].get("to") == "error"
    ]
    assert entered["reason"] == "vm_launch_failures"
    metrics = scrape(api)
    assert "autorecovery_hosts_in_error 1.0" in metrics
    assert "autorecovery_charges_recent 3.0" in metrics


def test_placement_of_an_unknown_cluster_is_404(api: ApiServer, fleet: Any) -> None:
    with api.client("vic") as http:
        answer = http.get("/api/v1/clusters/c-9/placement")
        assert (answer.status_code, answer.json()["field"]) == (404, "cluster_id")
        assert http.get("/api/v1/clusters/c-1/placement").json() == {"cluster": "c-1", "hosts": []}
    with api.client() as http:
        assert http.get("/api/v1/clusters/c-1/placement").status_code == 401


# -- Storage domains -------------------------------------------------------------------------


def _domain(api: ApiServer, sd_id: str) -> dict[str, Any]:
    with api.client("vic") as http:
        answer = http.get(f"/api/v1/storage-domains/{sd_id}")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_storage_domain_autorecovery_off_and_on_is_audited(api: ApiServer, fleet: Any, deps: Any) -> None:
    before = state(deps)
    with api.client("alice") as http:
        for value in ("no", None, 0):
            refused = http.put("/api/v1/storage-domains/sd-1/autorecovery", json={"enabled": value})
            assert (refused.status_code, refused.json()["field"]) == (422, "enabled")
        unknown = http.put("/api/v1/storage-domains/sd-9/autorecovery", json={"enabled": False})
        assert (unknown.status_code, unknown.json()["field"]) == (404, "storage_domain_id")
    assert state(deps) == before
    for who, enabled in (("alice", False), ("bob", True)):
        with api.client(who) as http:
            answer = http.put("/api/v1/storage-domains/sd-1/autorecovery", json={"enabled": enabled})
        assert answer.json() == {"storage_domain_id": "sd-1", "autorecovery": enabled}
        assert _domain(api, "sd-1")["autorecovery"] is enabled
    events = [(e["event"], e["actor"]) for e in audit(deps, object_type="storage_domain", object_id="sd-1")]
    assert events[-2:] == [("autorecovery_disabled", "alice"), ("autorecovery_enabled", "bob")]


def test_activation_is_refused_while_one_is_in_flight_and_maintenance_takes_the_domain_from_it(
    api: ApiServer, fleet: Any, deps: Any
) -> None:
    with deps.db.transaction() as conn:  # as the tick leaves an automatic activation it began
        conn.execute("UPDATE storage_domains SET status = 'inactive' WHERE id = 'sd-1'")
        conn.execute(
            "INSERT INTO sd_activations (id, sd_id, trigger, actor, state, fence, queued_at) "
            "VALUES ('sda-held', 'sd-1', 'auto', 'auto', 'sending', 1, now())"
        )
        conn.execute("UPDATE storage_domains SET fence = 1 WHERE id = 'sd-1'")
    before = state(deps)
    with api.client("alice") as http:
        again = http.post("/api/v1/storage-domains/sd-1/activate")
        assert (again.status_code, again.json()["error"]) == (409, "activation_in_flight"), again.text
        assert again.json()["holder"]["id"] == "sda-held" and "auto by auto" in again.json()["message"]
        assert state(deps) == before
        # An admin's maintenance abandons the activation and bumps the domain's fence: its
        # holder (fence 1) can write nothing after this.
        taken = http.post("/api/v1/storage-domains/sd-1/maintenance", json={"reason": "x"})
        assert taken.status_code == 200, taken.text
    with deps.db.transaction() as conn:
        held = conn.execute("SELECT state, outcome FROM sd_activations WHERE id = 'sda-held'").fetchone()
        sd = conn.execute("SELECT status, fence FROM storage_domains WHERE id = 'sd-1'").fetchone()
    assert held is not None and (held["state"], held["outcome"]) == ("abandoned", "maintenance")
    assert sd is not None and (sd["status"], sd["fence"]) == ("maintenance", 2)
    assert _domain(api, "sd-1")["activation"] is None


# -- The CLI over the same API ---------------------------------------------------------------


def _cli(servers: Servers, api: ApiServer, tmp_path: Path, *argv: str) -> tuple[int, str, str]:
    environ = servers.env(
        AUTORECOVERY_API_URL=api.base_url,
        AUTORECOVERY_TOKEN=api.tokens["alice"],
        AUTORECOVERY_DATA_DIR=str(tmp_path / "data"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *argv],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert api.tokens["alice"] not in proc.stdout + proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def test_cli_reports_runs_ranks_and_operates_domains(
    servers: Servers, api: ApiServer, fleet: Any, deps: Any, tmp_path: Path
) -> None:
    up_with_load(deps, fleet, {"h-0001": (1, 30), "h-0002": (6, 20)})
    code, out, err = _cli(
        servers, api, tmp_path, "vm-runs", "report", "--vm", "vm-9", "--json",
        "--attempt", "h-0001:failed:qemu-kvm: no /dev/kvm", "--attempt", "h-0002:ok",
    )  # fmt: skip
    assert code == Exit.OK, err
    assert json.loads(out)["charged"] == {"h-0001": 1}
    code, out, err = _cli(
        servers, api, tmp_path, "vm-runs", "report", "--vm", "vm-9", "--attempt", "h-0009:ok"
    )
    assert code == Exit.USAGE and "attempts[0].host" in err
    assert count(deps, "vm_runs") == 1

    code, out, err = _cli(servers, api, tmp_path, "placement", "c-1")
    assert code == Exit.OK, err
    assert out.index("h-0002") < out.index("h-0001") and "recent_charges -20" in out

    code, out, err = _cli(servers, api, tmp_path, "storage-domains", "maintenance", "sd-1", "--reason", "SAN")
    assert code == Exit.OK, err
    code, out, err = _cli(servers, api, tmp_path, "storage-domains", "list", "--json")
    assert [(d["id"], d["status"]) for d in json.loads(out)["storage_domains"]] == [("sd-1", "maintenance")]
    code, out, err = _cli(servers, api, tmp_path, "storage-domains", "show", "sd-9")
    assert code == Exit.NOT_FOUND and "storage-domains list" in err


# -- With the worker and the simulator (last: the module's worker runs on once started) ------


def _sim_url(deps: Any) -> str:
    agent_url: str = host_status(deps, "h-0001")["agent_url"]
    return agent_url.split("/agents/")[0]


def test_the_vm_launcher_charges_a_failing_host_and_it_drops_in_the_ranking(
    api: ApiServer, sim: Any, worker: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=4)
    all_up(app_module, deps)
    best = ranking(api)[0]["host_id"]
    client.inject("vm_fail", hosts=[best])

    with api.client("alice") as api_http, httpx.Client(base_url=_sim_url(deps), timeout=10.0) as sim_http:
        launcher = VmLauncher(api=api_http, sim=sim_http, clusters=["c-1"], rng=random.Random(7))
        first = launcher.launch_one()
        assert first is not None
        assert first["charged"] == {best: 1} and first["errored"] == []
        after = ranking(api)
        assert after[0]["host_id"] != best
        dropped = next(h for h in after if h["host_id"] == best)
        assert dropped["recent_charges"] == 1 and dropped["terms"]["recent_charges"] < 0
        # The next VMs go to the clean hosts first: the failing host is not tried again.
        for _ in range(3):
            run = launcher.launch_one()
            assert run is not None and run["charged"] == {}, run
    assert (launcher.launched, launcher.failed_attempts) == (4, 1)
    with deps.db.transaction() as conn:
        runs = conn.execute("SELECT vm_id, actor, attempts FROM vm_runs ORDER BY id").fetchall()
    assert len(runs) == 4 and {r["actor"] for r in runs} == {"alice"}
    assert [a["host"] for a in runs[0]["attempts"]][0] == best and runs[0]["attempts"][0]["ok"] is False
    assert host_status(deps, best)["status"] == "up"  # one charge is not enough for error


def test_storage_domain_routes_maintenance_then_activation_through_the_worker(
    api: ApiServer, sim: Any, worker: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=2)
    all_up(app_module, deps)
    with api.client("vic") as http:
        listed = http.get("/api/v1/storage-domains").json()["storage_domains"]
        assert [(d["id"], d["status"], d["autorecovery"]) for d in listed] == [
            ("sd-c-1-1", "active", True),
            ("sd-c-1-2", "active", True),
        ]
        assert http.get("/api/v1/storage-domains/sd-9").json()["field"] == "storage_domain_id"
    shown = _domain(api, "sd-c-1-1")
    assert (shown["clusters"], shown["activation"]) == (["c-1"], None)

    with api.client("bob") as http:
        active = http.post("/api/v1/storage-domains/sd-c-1-1/activate")
        assert (active.status_code, active.json()["error"]) == (409, "conflict"), active.text
        answer = http.post("/api/v1/storage-domains/sd-c-1-1/maintenance", json={"reason": "array firmware"})
        assert answer.status_code == 200, answer.text
    shown = _domain(api, "sd-c-1-1")
    assert (shown["status"], shown["detail"]) == ("maintenance", "array firmware")
    send_ticks(app_module, deps)  # monitoring never takes a domain out of maintenance
    assert _domain(api, "sd-c-1-1")["status"] == "maintenance"
    assert client.connects(sd_id="sd-c-1-1") == []

    with api.client("bob") as http:
        queued = http.post("/api/v1/storage-domains/sd-c-1-1/activate")
    assert queued.status_code == 202, queued.text
    body = queued.json()
    assert body["task_id"] == body["activation_id"] and body["storage_domain_id"] == "sd-c-1-1"
    wait_for(lambda: _domain(api, "sd-c-1-1")["status"] == "active", 30, "the domain to be active")
    done = _domain(api, "sd-c-1-1")
    assert done["activation"] is None
    connects = client.connects(sd_id="sd-c-1-1")
    assert [c["outcome"] for c in connects] == ["ok"]
    events = [(e["event"], e["actor"]) for e in audit(deps, object_id="sd-c-1-1")]
    assert events[-5:] == [
        ("status_changed", "bob"),
        ("activation_queued", "bob"),
        ("activation_started", "bob"),
        ("connect_sent", "bob"),  # the agent (v2) answered at once; a later step saw it done
        ("activation_succeeded", "bob"),
    ]
    [succeeded] = audit(deps, object_id="sd-c-1-1", event="activation_succeeded")
    assert succeeded["details"]["activation_id"] == body["activation_id"]
    metrics = scrape(api)
    assert 'autorecovery_storage_domains{status="active"} 2.0' in metrics
    assert 'autorecovery_storage_domain_activations_total{outcome="active",trigger="manual"} 1.0' in metrics
