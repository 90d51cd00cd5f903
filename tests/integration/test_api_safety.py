"""Safety over a real socket: pauses, holds, the gate in /safety, /plan, /readyz and /metrics.

The API runs as its own process against the suite's PostgreSQL and Redis (``api_fixtures.py``).
No worker runs here: holds and the observer's state are set with SQL, as a tick would leave them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from psycopg import sql as pgsql

from tests.integration.api_fixtures import ApiServer, audit, good_report, snapshot
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)  # the ``api`` and ``fleet`` fixtures

SINCE = datetime(2026, 11, 24, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def calm(deps: Any) -> Iterator[None]:
    """No pause and no observer gate during a test; the observer's row is put back after it.

    The suite's cleanup empties the fleet's tables, not the pauses nor the observer's row.
    """
    with deps.db.transaction() as conn:
        saved = conn.execute("SELECT * FROM observer WHERE id = 1").fetchone()
        conn.execute("DELETE FROM pauses")
        conn.execute("UPDATE observer SET gate = NULL, silent_hosts = 0, observed_hosts = 0")
    yield
    with deps.db.transaction() as conn:
        conn.execute("DELETE FROM pauses")
        if saved is not None:
            conn.execute(
                "UPDATE observer SET last_full_tick_at = %(last_full_tick_at)s, gate = %(gate)s, "
                "silent_hosts = %(silent_hosts)s, observed_hosts = %(observed_hosts)s, "
                "updated_at = %(updated_at)s WHERE id = 1",
                saved,
            )


def state(deps: Any) -> dict[str, list[str]]:
    """Every row of the product's tables, pauses, holds and incidents included."""
    found = snapshot(deps)
    with deps.db.transaction() as conn:
        for table in ("pauses", "incidents", "observer"):
            query = pgsql.SQL("SELECT t::text AS row FROM {} t").format(pgsql.Identifier(table))
            rows = conn.execute(query).fetchall()
            found[table] = sorted(r["row"] for r in rows)
    return found


def sql(deps: Any, query: str, params: dict[str, Any] | None = None) -> None:
    """Run one statement in its own transaction."""
    with deps.db.transaction() as conn:
        conn.execute(query, params)


def hold(deps: Any, host_id: str) -> None:
    """Put a host in quarantine and in backoff, as the tick does after failures."""
    sql(
        deps,
        "UPDATE hosts SET failures = 5, next_attempt_at = %(next)s, quarantined_at = %(since)s, "
        "quarantine_reason = 'flapping: 5 automatic ends within 3600s' WHERE id = %(id)s",
        {"id": host_id, "since": SINCE, "next": datetime.now(UTC) + timedelta(hours=1)},
    )


def holds(deps: Any, host_id: str) -> tuple[Any, ...]:
    """A host's failures, next attempt and quarantine time."""
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT failures, next_attempt_at, quarantined_at FROM hosts WHERE id = %s", (host_id,)
        ).fetchone()
    assert row is not None
    return row["failures"], row["next_attempt_at"], row["quarantined_at"]


def paused(deps: Any, scope: str = "fleet") -> None:
    """Store a pause by 'carol' with no expiry."""
    sql(
        deps,
        "INSERT INTO pauses (scope, reason, owner, created_at) VALUES (%(scope)s, 'set up', 'carol', now())",
        {"scope": scope},
    )


# -- Who may write ---------------------------------------------------------------------------

WRITES: list[tuple[str, str, dict[str, Any], str | None]] = [
    ("PUT", "/api/v1/pause", {"json": {"reason": "storage work", "duration_s": 600}}, None),
    ("DELETE", "/api/v1/pause", {}, "fleet"),
    (
        "PUT",
        "/api/v1/clusters/c-1/pause",
        {"json": {"reason": "rack", "expires_at": "2099-01-01T00:00:00Z"}},
        None,
    ),
    ("DELETE", "/api/v1/clusters/c-1/pause", {}, "c-1"),
    ("POST", "/api/v1/hosts/h-0001/quarantine/clear", {}, None),
    ("POST", "/api/v1/hosts/h-0001/backoff/reset", {}, None),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "pause"), WRITES, ids=[f"{m} {p}" for m, p, _, _ in WRITES]
)
def test_auth_matrix_on_safety_writes(
    api: ApiServer, fleet: Any, deps: Any, method: str, path: str, kwargs: dict[str, Any], pause: str | None
) -> None:
    hold(deps, "h-0001")
    if pause:
        paused(deps, pause)
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
    assert state(deps) == before, "a refused caller wrote something"

    with api.client("bob") as http:
        answer = http.request(method, path, **kwargs)
    assert answer.status_code == 200, answer.text
    assert state(deps) != before
    [entry] = audit(deps, actor="bob")
    assert entry["object_id"] == (
        "h-0001" if "/hosts/" in path else "c-1" if "/clusters/" in path else "fleet"
    )


# -- Refused input ---------------------------------------------------------------------------

PAST = "2020-01-01T00:00:00Z"
MALFORMED: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("PUT", "/api/v1/pause", {"json": {}}, 422, "reason"),
    ("PUT", "/api/v1/pause", {"json": {"reason": ""}}, 422, "reason"),
    ("PUT", "/api/v1/pause", {"json": {"reason": "x" * 501}}, 422, "reason"),
    ("PUT", "/api/v1/pause", {"json": {"reason": "a\u0000b"}}, 422, "reason"),
    ("PUT", "/api/v1/pause", {"json": {"reason": ["x"]}}, 422, "reason"),
    ("PUT", "/api/v1/pause", {"json": {"reason": "x", "duration_s": 0}}, 422, "duration_s"),
    ("PUT", "/api/v1/pause", {"json": {"reason": "x", "duration_s": "60"}}, 422, "duration_s"),
    ("PUT", "/api/v1/pause", {"json": {"reason": "x", "duration_s": 1e12}}, 422, "duration_s"),
    (
        "PUT",
        "/api/v1/pause",
        {"json": {"reason": "x", "expires_at": "2099-01-01T00:00:00"}},
        422,
        "expires_at",
    ),
    ("PUT", "/api/v1/pause", {"json": {"reason": "x", "expires_at": "next week"}}, 422, "expires_at"),
    ("PUT", "/api/v1/pause", {"json": {"reason": "x", "expires_at": 4102444800}}, 422, "expires_at"),
    ("PUT", "/api/v1/pause", {"json": {"reason": "x", "expires_at": PAST}}, 422, "expires_at"),
    (
        "PUT",
        "/api/v1/pause",
        {"json": {"reason": "x", "expires_at": "2099-01-01T00:00:00Z", "duration_s": 60}},
        422,
        "duration_s",
    ),
    ("PUT", "/api/v1/pause", {"json": {"reason": "x", "owner": "mallory"}}, 422, "owner"),
    (
        "PUT",
        "/api/v1/pause",
        {"content": b"{nope", "headers": {"content-type": "application/json"}},
        422,
        "body",
    ),
    ("PUT", "/api/v1/pause", {}, 422, "body"),
    ("DELETE", "/api/v1/pause", {}, 404, None),
    ("PUT", "/api/v1/clusters/c-404/pause", {"json": {"reason": "x"}}, 404, "cluster_id"),
    ("PUT", "/api/v1/clusters/bad%20id/pause", {"json": {"reason": "x"}}, 422, "cluster_id"),
    ("PUT", "/api/v1/clusters/fleet/pause", {"json": {"reason": "x"}}, 422, "cluster_id"),
    ("PUT", "/api/v1/clusters/c-1/pause", {"json": {"reason": "x", "expires_at": PAST}}, 422, "expires_at"),
    ("DELETE", "/api/v1/clusters/c-404/pause", {}, 404, "cluster_id"),
    ("DELETE", "/api/v1/clusters/c-1/pause", {}, 404, None),
    ("DELETE", "/api/v1/clusters/fleet/pause", {}, 422, "cluster_id"),
    ("POST", "/api/v1/hosts/h-404/quarantine/clear", {}, 404, "host_id"),
    ("POST", "/api/v1/hosts/bad%20id/quarantine/clear", {}, 422, "host_id"),
    ("POST", "/api/v1/hosts/h-404/backoff/reset", {}, 404, "host_id"),
    ("POST", "/api/v1/hosts/" + "h" * 200 + "/backoff/reset", {}, 422, "host_id"),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "field"),
    MALFORMED,
    ids=[f"{m} {p[:40]} {f}-{i}" for i, (m, p, _, _, f) in enumerate(MALFORMED)],
)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    api: ApiServer,
    fleet: Any,
    deps: Any,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    hold(deps, "h-0001")
    before = state(deps)
    with api.client("alice") as http:
        answer = http.request(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["field"] == field, body
    assert body["error"] == ("not_paused" if status == 404 and field is None else body["error"])
    assert body["error"] and body["message"]
    assert state(deps) == before, "a refused request wrote something"


# -- Pause and resume ------------------------------------------------------------------------


def test_a_pause_shows_in_safety_plan_host_and_readyz_until_resumed(
    api: ApiServer, fleet: Any, deps: Any
) -> None:
    with api.client("alice") as http:
        assert http.post("/api/v1/hosts/h-0001/report", json=good_report("h-0001")).status_code == 200
        assert http.get("/api/v1/plan").json()["hosts"][0]["action"] == "activate"
        answer = http.put("/api/v1/pause", json={"reason": "storage migration", "duration_s": 1800})
    assert answer.status_code == 200, answer.text
    pause = answer.json()
    assert (pause["scope"], pause["owner"], pause["reason"]) == ("fleet", "alice", "storage migration")
    left = datetime.fromisoformat(pause["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=29) < left <= timedelta(minutes=30)

    with api.client("vic") as http:
        assert http.get("/api/v1/pause").json() == {"pauses": [pause]}
        safety = http.get("/api/v1/safety").json()
        plan = http.get("/api/v1/plan").json()
        host = http.get("/api/v1/hosts/h-0001").json()
    assert safety["pauses"] == [pause] and safety["gate"] is None
    assert safety["incidents"] == [] and safety["in_flight"] == {}
    assert (plan["gate"], plan["pauses"]) == (None, [pause])
    codes = {h["host_id"]: (h["action"], h["code"]) for h in plan["hosts"]}
    assert codes["h-0001"] == ("skip", "paused")
    assert "fleet-wide by alice" in next(h["detail"] for h in plan["hosts"] if h["host_id"] == "h-0001")
    assert codes["h-0002"] == ("skip", "no_report")
    assert host["why_not_recovered"]["code"] == "paused" and host["holds"]["pause"] == pause
    with api.client("vic") as http:
        ready = http.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["automatic_activation"] == {"gated": False, "reason": None, "paused": ["fleet"]}

    with api.client("bob") as http:
        lifted = http.delete("/api/v1/pause")
        assert lifted.status_code == 200 and lifted.json() == pause
        again = http.delete("/api/v1/pause")
        assert (again.status_code, again.json()["error"]) == (404, "not_paused")
        assert http.get("/api/v1/plan").json()["hosts"][0]["action"] == "activate"
    with api.client("vic") as http:
        assert http.get("/readyz").json()["automatic_activation"]["paused"] == []
    entries = [
        (e["event"], e["actor"], e["reason"]) for e in audit(deps, object_type="pause", object_id="fleet")
    ]
    assert entries == [("paused", "alice", "storage migration"), ("resumed", "bob", "storage migration")]


def test_a_cluster_pause_with_an_expiry_ends_by_itself(api: ApiServer, fleet: Any, deps: Any) -> None:
    with api.client("alice") as http:
        http.post("/api/v1/hosts/h-0001/report", json=good_report("h-0001"))
        answer = http.put("/api/v1/clusters/c-1/pause", json={"reason": "rack power", "duration_s": 1.5})
        assert answer.status_code == 200, answer.text
        assert answer.json()["scope"] == "c-1"
        assert http.get("/api/v1/plan", params={"cluster": "c-1"}).json()["hosts"][0]["code"] == "paused"

        def ended() -> bool:
            return bool(http.get("/api/v1/pause").json() == {"pauses": []})

        wait_for(ended, 10, "the pause to end by itself")
        assert http.get("/api/v1/plan").json()["hosts"][0]["action"] == "activate"
    assert [e["actor"] for e in audit(deps, event="paused", object_id="c-1")] == ["alice"]


# -- Holds -----------------------------------------------------------------------------------


def test_clearing_a_quarantine_and_resetting_a_backoff(api: ApiServer, fleet: Any, deps: Any) -> None:
    hold(deps, "h-0001")
    hold(deps, "h-0002")
    with api.client("vic") as http:
        shown = http.get("/api/v1/hosts/h-0001").json()["holds"]
    assert shown["failures"] == 5 and shown["quarantined_at"] == SINCE.isoformat()
    assert shown["quarantine_reason"].startswith("flapping")

    with api.client("alice") as http:
        reset = http.post("/api/v1/hosts/h-0002/backoff/reset")
        cleared = http.post("/api/v1/hosts/h-0001/quarantine/clear")
    assert reset.status_code == 200 and cleared.status_code == 200, (reset.text, cleared.text)
    assert reset.json()["cleared"] == "backoff" and reset.json()["previous"]["failures"] == 5
    assert holds(deps, "h-0002") == (0, None, SINCE), "a backoff reset leaves the quarantine"
    assert cleared.json()["cleared"] == "quarantine_and_backoff"
    assert cleared.json()["previous"]["quarantined_at"] == SINCE.isoformat()
    assert holds(deps, "h-0001") == (0, None, None)
    [entry] = audit(deps, event="quarantine_cleared")
    assert (entry["object_id"], entry["actor"]) == ("h-0001", "alice")
    assert entry["details"]["failures"] == 5
    assert [(e["object_id"], e["actor"]) for e in audit(deps, event="backoff_reset")] == [("h-0002", "alice")]


def test_a_quarantine_on_an_up_host_shows_in_the_list_safety_and_metrics(
    api: ApiServer, fleet: Any, deps: Any
) -> None:
    sql(deps, "UPDATE hosts SET status = 'up' WHERE id IN ('h-0001', 'h-0002')")
    hold(deps, "h-0001")  # quarantined (and backing off) while up: its next fault waits for an admin
    sql(deps, "UPDATE hosts SET failures = 0, next_attempt_at = NULL WHERE id = 'h-0001'")
    with api.client("vic") as http:
        listed = {h["id"]: h for h in http.get("/api/v1/hosts").json()["hosts"]}
        safety = http.get("/api/v1/safety").json()
        text = http.get("/metrics").text
        shown = http.get("/api/v1/hosts/h-0001").json()
    assert (listed["h-0001"]["status"], listed["h-0001"]["holds"]) == ("up", ["quarantine"])
    assert listed["h-0002"]["holds"] == []
    expected = {"hold": "quarantine", "hosts": 1, "by_status": {"up": 1}, "examples": ["h-0001"]}
    assert safety["holds"] == [expected]
    assert 'autorecovery_hosts_held{hold="quarantine",status="up"} 1.0' in text
    assert [h["hold"] for h in shown["held_by"]] == ["quarantine"]


def test_an_agent_that_cannot_save_its_state_shows_in_the_list_safety_and_metrics(
    api: ApiServer, fleet: Any, deps: Any
) -> None:
    sql(deps, "UPDATE hosts SET status = 'up' WHERE id = 'h-0001'")
    full = good_report("h-0001", protocol=2, state_unwritable="No space left on device")
    with api.client("alice") as http:
        assert http.post("/api/v1/hosts/h-0001/report", json=full).status_code == 200
    with api.client("vic") as http:
        listed = {h["id"]: h for h in http.get("/api/v1/hosts").json()["hosts"]}
        safety = http.get("/api/v1/safety").json()
        text = http.get("/metrics").text
    assert (listed["h-0001"]["status"], listed["h-0001"]["holds"]) == ("up", ["agent_state_unwritable"])
    assert [(h["hold"], h["by_status"]) for h in safety["holds"]] == [("agent_state_unwritable", {"up": 1})]
    assert 'autorecovery_hosts_held{hold="agent_state_unwritable",status="up"} 1.0' in text


def test_the_demos_admin_clears_a_quarantine_after_a_while_through_the_api(
    api: ApiServer, fleet: Any, deps: Any
) -> None:
    from harness.up.operator import DemoOperator

    hold(deps, "h-0001")
    notes: list[str] = []
    with api.client("alice") as http:
        operator = DemoOperator(http, after_s=30.0, note=notes.append)
        operator.step(1000.0)  # seen quarantined: looked at, not cleared yet
        operator.step(1029.0)  # looked at again: held 29 s, too soon to clear
        assert holds(deps, "h-0001")[2] == SINCE and operator.cleared == 0
        operator.step(1030.0)  # it looks every 5 s, not at every step
        assert holds(deps, "h-0001")[2] == SINCE
        operator.step(1034.0)
    assert holds(deps, "h-0001") == (0, None, None) and operator.cleared == 1, notes
    assert notes == ["operator cleared the quarantine of h-0001 after 34s"]
    [entry] = audit(deps, event="quarantine_cleared")
    assert (entry["object_id"], entry["actor"]) == ("h-0001", "alice")


def test_the_longest_down_host_of_each_cluster_is_in_metrics(api: ApiServer, fleet: Any, deps: Any) -> None:
    sql(deps, "UPDATE hosts SET status = 'up' WHERE id = 'h-0001'")
    sql(deps, "UPDATE hosts SET status = 'maintenance', status_changed_at = now() - interval '30 days' "
              "WHERE id = 'h-0002'")  # an admin's: not down for a fault
    sql(deps, "UPDATE hosts SET status = 'non_operational', status_changed_at = now() - interval '3 days' "
              "WHERE id = 'h-0003'")
    with api.client("vic") as http:
        text = http.get("/metrics").text
    assert 'autorecovery_cluster_hosts_down{cluster="c-1"} 1.0' in text
    name = 'autorecovery_cluster_longest_down_seconds{cluster="c-1"}'
    [line] = [x for x in text.splitlines() if x.startswith(name)]
    assert 3 * 86400 <= float(line.split()[-1]) < 3 * 86400 + 60


# -- Gate and metrics ------------------------------------------------------------------------


def test_gate_holds_and_incidents_are_in_metrics_readyz_and_plan(
    api: ApiServer, fleet: Any, deps: Any
) -> None:
    gate = "monitoring_stale: 3 of 3 hosts have no fresh data (limit 50%); the collector may be broken"
    hold(deps, "h-0001")
    sql(
        deps, "UPDATE hosts SET failures = 1, next_attempt_at = now() + interval '1 hour' WHERE id = 'h-0002'"
    )
    sql(deps, "UPDATE hosts SET last_decision = 'capped' WHERE id = 'h-0003'")
    sql(
        deps,
        "UPDATE observer SET gate = %(gate)s, silent_hosts = 3, observed_hosts = 3, "
        "last_full_tick_at = now()",
        {"gate": gate},
    )
    sql(
        deps,
        "INSERT INTO incidents (cluster_id, reason, subject, hosts, opened_at) "
        "VALUES ('c-1', 'storage_domain_unreachable', 'sd-1', 3, now())",
    )
    with api.client("alice") as http:
        assert http.post("/api/v1/hosts/h-0003/activate").status_code == 202  # no worker: stays queued
        assert http.put("/api/v1/clusters/c-1/pause", json={"reason": "rack"}).status_code == 200
    with api.client("vic") as http:
        text = http.get("/metrics").text
        safety = http.get("/api/v1/safety").json()
        plan = http.get("/api/v1/plan").json()
    for line in [
        'autorecovery_observer_gated{reason="monitoring_stale"} 1.0',
        "autorecovery_observer_silent_hosts 3.0",
        'autorecovery_pauses{scope="c-1"} 1.0',
        'autorecovery_pauses{scope="fleet"} 0.0',
        "autorecovery_hosts_quarantined 1.0",
        "autorecovery_hosts_in_backoff 2.0",
        "autorecovery_hosts_capped 1.0",
        "autorecovery_incidents_open 1.0",
        'autorecovery_activations_in_flight{cluster="c-1"} 1.0',
        'autorecovery_metrics_source_up{source="postgresql"} 1.0',
    ]:
        assert line in text, line
    assert (safety["gate"], safety["silent_hosts"], safety["observed_hosts"]) == (gate, 3, 3)
    assert safety["in_flight"] == {"c-1": 1}
    [incident] = safety["incidents"]
    assert (incident["cluster"], incident["subject"], incident["hosts"]) == ("c-1", "sd-1", 3)
    assert plan["gate"] == gate and [p["scope"] for p in plan["pauses"]] == ["c-1"]
    with api.client("vic") as http:
        ready = http.get("/readyz")
    assert ready.status_code == 200, "the gate is informational: the API is ready"
    assert ready.json()["automatic_activation"] == {"gated": True, "reason": gate, "paused": ["c-1"]}

    sql(deps, "UPDATE observer SET gate = NULL")
    with api.client("vic") as http:
        assert 'autorecovery_observer_gated{reason=""} 0.0' in http.get("/metrics").text


def test_reads_need_a_token_and_a_viewer_may_read(api: ApiServer, fleet: Any) -> None:
    for path in ("/api/v1/pause", "/api/v1/safety"):
        with api.client() as anonymous:
            assert anonymous.get(path).status_code == 401, path
        with api.client("vic") as viewer:
            assert viewer.get(path).status_code == 200, path


def test_pause_writes_an_audit_entry_with_its_details(api: ApiServer, fleet: Any, deps: Any) -> None:
    expires = "2099-01-01T00:00:00+00:00"
    with api.client("alice") as http:
        assert (
            http.put(
                "/api/v1/pause", json={"reason": "freeze", "expires_at": "2099-01-01T01:00:00+01:00"}
            ).json()["expires_at"]
            == expires
        )
    [entry] = audit(deps, event="paused")
    assert (entry["object_type"], entry["object_id"], entry["actor"]) == ("pause", "fleet", "alice")
    assert entry["details"]["expires_at"] == expires
