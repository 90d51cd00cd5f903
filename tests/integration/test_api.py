"""The HTTP API over a real socket: auth on every route; refused input writes nothing.

The API runs as its own process (``python -m api``) against the suite's PostgreSQL, Redis and
broker; see ``api_fixtures.py``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.api_fixtures import DEAD_AGENT, ApiServer, audit, good_report, snapshot

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)  # the ``api`` and ``fleet`` fixtures

WRITES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/v1/clusters", {"json": {"id": "c-2", "required_networks": ["mgmt"]}}),
    (
        "POST",
        "/api/v1/hosts",
        {"json": {"id": "h-0009", "cluster": "c-1", "agent_url": DEAD_AGENT.format("h-0009")}},
    ),
    ("DELETE", "/api/v1/hosts/h-0003", {}),
    ("PUT", "/api/v1/hosts/h-0001/autorecovery", {"json": {"enabled": False}}),
    ("POST", "/api/v1/hosts/h-0001/maintenance", {"json": {"reason": "replacing a DIMM"}}),
    ("POST", "/api/v1/hosts/h-0002/report", {"json": "REPORT"}),
    ("POST", "/api/v1/hosts/h-0002/activate", {}),
]
READS = [
    "/api/v1/hosts",
    "/api/v1/hosts/h-0001",
    "/api/v1/clusters",
    "/api/v1/clusters/c-1",
    "/api/v1/audit",
    "/api/v1/plan",
    "/metrics",
]


def _request(
    server: ApiServer,
    who: str | None,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    token: str | None = None,
) -> Any:
    if kwargs.get("json") == "REPORT":
        kwargs = {"json": good_report(path.split("/")[4])}
    with server.client(who, token) as http:
        return http.request(method, path, **kwargs)


@pytest.mark.parametrize(("method", "path", "kwargs"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_auth_matrix_on_write_route(
    api: ApiServer, fleet: Any, deps: Any, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    before = snapshot(deps)
    for who, token, status in [
        (None, None, 401),
        (None, "not-a-token-" + "x" * 20, 401),
        (None, api.tokens["alice"] + "x", 401),
        ("vic", None, 403),
    ]:
        answer = _request(api, who, method, path, kwargs, token)
        assert answer.status_code == status, (who, token, answer.text)
        body = answer.json()
        assert body["error"] == ("unauthorized" if status == 401 else "forbidden")
        assert set(body) >= {"error", "message", "field"}
        if status == 401:
            assert answer.headers["www-authenticate"].startswith("Bearer")
        assert api.tokens["alice"] not in answer.text
    # A malformed body from a caller without a token is still a 401, not a 422.
    with api.client() as http:
        assert (
            http.request(
                method, path, content=b"{not json", headers={"content-type": "application/json"}
            ).status_code
            == 401
        )
    assert snapshot(deps) == before, "a refused caller wrote something"

    answer = _request(api, "bob", method, path, kwargs)
    assert 200 <= answer.status_code < 300, answer.text
    assert snapshot(deps) != before
    if path.endswith("/report"):  # reports come every tick: stored, not audited
        assert snapshot(deps)["reports"] != before["reports"]
    else:
        assert audit(deps, actor="bob"), "the admin's write is audited with the token's name"


def test_reads_need_a_token_and_a_viewer_may_read(api: ApiServer, fleet: Any) -> None:
    for path in READS:
        with api.client() as anonymous:
            assert anonymous.get(path).status_code == 401, path
        with api.client("vic") as viewer:
            assert viewer.get(path).status_code == 200, path
    with api.client() as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/openapi.json").status_code == 200


LONG_ID = "h-" + "x" * 200
MALFORMED: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("POST", "/api/v1/clusters", {"json": {"id": "bad id"}}, 422, "id"),
    ("POST", "/api/v1/clusters", {"json": {}}, 422, "id"),
    ("POST", "/api/v1/clusters", {"json": {"id": "c-9", "cpu_flags": "vmx"}}, 422, "cpu_flags"),
    ("POST", "/api/v1/clusters", {"json": {"id": "c-9", "cpu_flags": ["vmx", 1]}}, 422, "cpu_flags[1]"),
    (
        "POST",
        "/api/v1/clusters",
        {"json": {"id": "c-9", "storage_domains": ["a", "a"]}},
        422,
        "storage_domains",
    ),
    ("POST", "/api/v1/clusters", {"json": {"id": "c-9", "min_version": ""}}, 422, "min_version"),
    ("POST", "/api/v1/clusters", {"json": {"id": "c-9", "min_version": "four"}}, 422, "min_version"),
    ("POST", "/api/v1/clusters", {"json": {"id": "c-9", "min_version": "4.x"}}, 422, "min_version"),
    (
        "POST",
        "/api/v1/hosts",
        {"json": {"id": "h-9", "cluster": "c-1", "agent_url": "http://a", "adopt": "yes"}},
        422,
        "adopt",
    ),
    (
        "POST",
        "/api/v1/hosts/batch",
        {"json": {"hosts": [{"id": "h-9", "cluster": "c-1", "agent_url": "http://a", "adopt": "yes"}]}},
        422,
        "hosts[0].adopt",
    ),
    ("POST", "/api/v1/clusters", {"json": {"id": "c-9", "owner": "me"}}, 422, "owner"),
    (
        "POST",
        "/api/v1/clusters",
        {"content": b"{nope", "headers": {"content-type": "application/json"}},
        422,
        "body",
    ),
    (
        "POST",
        "/api/v1/hosts",
        {"json": {"id": LONG_ID, "cluster": "c-1", "agent_url": "http://a"}},
        422,
        "id",
    ),
    ("POST", "/api/v1/hosts", {"json": {"id": 7, "cluster": "c-1", "agent_url": "http://a"}}, 422, "id"),
    (
        "POST",
        "/api/v1/hosts",
        {"json": {"id": "h-9", "cluster": "c-1", "agent_url": "ftp://a"}},
        422,
        "agent_url",
    ),
    (
        "POST",
        "/api/v1/hosts",
        {"json": {"id": "h-9", "cluster": "c-1", "agent_url": "http://u:p@a"}},
        422,
        "agent_url",
    ),
    (
        "POST",
        "/api/v1/hosts",
        {"json": {"id": "h-9", "cluster": "c-1", "agent_url": "http://a:99999"}},
        422,
        "agent_url",
    ),
    ("POST", "/api/v1/hosts", {"json": {"id": "h-9", "cluster": "c-1"}}, 422, "agent_url"),
    *(
        ("POST", "/api/v1/hosts", {"json": {"id": "h-9", "cluster": "c-1", "agent_url": u}}, 422, "agent_url")
        for u in (
            "http://169.254.169.254/latest/meta-data",
            "http://metadata.google.internal/computeMetadata/v1",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]:9000",
        )
    ),
    (
        "POST",
        "/api/v1/hosts",
        {"json": {"id": "h-9", "cluster": "c-404", "agent_url": "http://a"}},
        422,
        "cluster",
    ),
    (
        "POST",
        "/api/v1/hosts",
        {"json": {"id": "h-0001", "cluster": "c-1", "agent_url": "http://a"}},
        409,
        "id",
    ),
    ("DELETE", "/api/v1/hosts/bad%20id", {}, 422, "host_id"),
    ("DELETE", "/api/v1/hosts/h-404", {}, 404, "host_id"),
    ("PUT", "/api/v1/hosts/h-0001/autorecovery", {"json": {"enabled": "false"}}, 422, "enabled"),
    ("PUT", "/api/v1/hosts/h-0001/autorecovery", {"json": {}}, 422, "enabled"),
    ("PUT", "/api/v1/hosts/h-0001/autorecovery", {"json": {"enabled": False, "why": "x"}}, 422, "why"),
    ("PUT", "/api/v1/hosts/h-404/autorecovery", {"json": {"enabled": False}}, 404, "host_id"),
    ("POST", "/api/v1/hosts/h-0001/maintenance", {"json": {"reason": "a\u0000b"}}, 422, "reason"),
    ("POST", "/api/v1/hosts/h-0001/maintenance", {"json": {"reason": 5}}, 422, "reason"),
    ("POST", "/api/v1/hosts/h-0001/maintenance", {"json": {"reason": "x" * 501}}, 422, "reason"),
    ("POST", "/api/v1/hosts/h-0001/maintenance", {"json": {"until": "monday"}}, 422, "until"),
    ("POST", "/api/v1/hosts/h-0001/activate?wait_s=-1", {}, 422, "wait_s"),
    ("POST", "/api/v1/hosts/h-0001/activate?wait_s=121", {}, 422, "wait_s"),
    ("POST", "/api/v1/hosts/h-0001/activate?wait_s=nan", {}, 422, "wait_s"),
    ("POST", "/api/v1/hosts/h-0001/activate?force=maybe", {}, 422, "force"),
    ("POST", "/api/v1/hosts/h-0001/activate?forced=1", {}, 422, "forced"),
    ("POST", "/api/v1/hosts/h-404/activate", {}, 404, "host_id"),
    ("POST", "/api/v1/hosts/h-404/report", {"json": good_report("h-404")}, 404, "host_id"),
    ("GET", "/api/v1/hosts?limit=0", {}, 422, "limit"),
    ("GET", "/api/v1/hosts?limit=1001", {}, 422, "limit"),
    ("GET", "/api/v1/hosts?status=sleeping", {}, 422, "status"),
    ("GET", "/api/v1/hosts?autorecovery=maybe", {}, 422, "autorecovery"),
    ("GET", "/api/v1/hosts?stauts=up", {}, 422, "stauts"),
    ("GET", "/api/v1/hosts/bad%20id", {}, 422, "host_id"),
    ("GET", "/api/v1/hosts/h-404", {}, 404, "host_id"),
    ("GET", "/api/v1/clusters/c-404", {}, 404, "cluster_id"),
    ("GET", "/api/v1/audit?since=yesterday", {}, 422, "since"),
    ("GET", "/api/v1/audit?since=2026-01-01T00:00:00", {}, 422, "since"),
    ("GET", "/api/v1/audit?before=0", {}, 422, "before"),
    ("GET", "/api/v1/audit?object_type=HOST", {}, 422, "object_type"),
    ("GET", "/api/v1/plan?cluster=bad%20id", {}, 422, "cluster"),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "field"),
    MALFORMED,
    ids=[f"{m} {p} {f}-{i}" for i, (m, p, _, _, f) in enumerate(MALFORMED)],
)
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(
    api: ApiServer,
    fleet: Any,
    deps: Any,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    field: str,
) -> None:
    before = snapshot(deps)
    with api.client("alice") as http:
        answer = http.request(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["field"] == field, body
    assert body["error"] and body["message"]
    assert snapshot(deps) == before, "a refused request wrote something"


BAD_REPORTS: list[tuple[dict[str, Any] | None, str]] = [
    ({"vms_running": "3"}, "vms_running"),
    ({"vms_running": -1}, "vms_running"),
    ({"vms_running": 2**40}, "vms_running"),
    ({"vms_running": None}, "vms_running"),
    ({"host_id": "h-0002"}, "host_id"),
    ({"reported_at": "2026-11-24T12:00:00"}, "reported_at"),
    ({"reported_at": "0001-01-01T00:00:00+01:00"}, "reported_at"),
    ({"networks": {"mgmt": "up"}}, "networks.mgmt"),
    ({"version": "4.5\u0000"}, "version"),
    ({"cpu_flags": "vmx"}, "cpu_flags"),
    (None, "body"),  # not JSON at all: the body, as for a pulled report
]


@pytest.mark.parametrize(("changes", "field"), BAD_REPORTS, ids=[f for _, f in BAD_REPORTS])
def test_bad_pushed_report_is_refused_audited_and_not_stored(
    api: ApiServer, fleet: Any, deps: Any, changes: dict[str, Any] | None, field: str
) -> None:
    before = snapshot(deps)
    body = json.dumps(good_report("h-0001", **changes)) if changes else "[1, 2"
    with api.client("alice") as http:
        answer = http.post(
            "/api/v1/hosts/h-0001/report", content=body, headers={"content-type": "application/json"}
        )
    assert answer.status_code == 422, answer.text
    assert (answer.json()["error"], answer.json()["field"]) == ("bad_report", field)
    after = snapshot(deps)
    assert {t: rows for t, rows in after.items() if t != "audit_log"} == {
        t: rows for t, rows in before.items() if t != "audit_log"
    }
    rejected = audit(deps, event="report_rejected")
    assert [(r["object_id"], r["actor"], r["reason"]) for r in rejected] == [("h-0001", "alice", field)]
    assert len(after["audit_log"]) == len(before["audit_log"]) + 1
