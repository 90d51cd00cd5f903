"""The reporter role over a real socket: it pushes reports for its hosts, and gets 403 on every
other route of the OpenAPI document (and on another host's report), before any body is read.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api_fixtures import REPORTER_HOSTS, ApiServer, good_report, snapshot

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)

#: Routes a reporter may call; every other one of the document answers it 403.
ALLOWED = {("POST", "/api/v1/hosts/{host_id}/report"), ("POST", "/api/v1/reports")}
PUBLIC = {"/healthz", "/readyz"}
PARAMS = {"host_id": "h-0003", "cluster_id": "c-1", "storage_domain_id": "sd-1"}


def _operations(api: ApiServer) -> list[tuple[str, str]]:
    with api.client() as http:
        document = http.get("/openapi.json").json()
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


def test_a_reporter_gets_403_on_every_other_route(api: ApiServer, fleet: Any, deps: Any) -> None:
    operations = _operations(api)
    assert len(operations) >= 35
    before = snapshot(deps)
    checked = 0
    with api.client("rita") as http:
        for method, path in operations:
            if path in PUBLIC:
                continue
            url = path.format(**PARAMS)
            # A body the route would take from an admin: refused all the same, and unread.
            answer = http.request(method, url, json={"reason": "x"})
            if (method, path) in ALLOWED and "{host_id}" not in path:
                continue  # the bulk push: below
            assert answer.status_code == 403, (method, url, answer.text)
            assert answer.json()["error"] == "forbidden"
            checked += 1
    public = sum(path in PUBLIC for _, path in operations)
    assert checked == len(operations) - public - 1  # all but the public ones and the bulk push
    assert snapshot(deps) == before, "a reporter's refused call wrote something"


def test_a_reporter_pushes_for_its_hosts_alone_and_in_bulk(api: ApiServer, fleet: Any, deps: Any) -> None:
    with api.client("rita") as http:
        for host_id in REPORTER_HOSTS:
            answer = http.post(f"/api/v1/hosts/{host_id}/report", json=good_report(host_id))
            assert answer.status_code == 200, answer.text
        other = http.post("/api/v1/hosts/h-0003/report", json=good_report("h-0003"))
        assert other.status_code == 403 and other.json()["field"] is None
        bulk = http.post(
            "/api/v1/reports",
            json={"reports": [good_report("h-0001"), good_report("h-0003"), good_report("h-0002", kvm="no")]},
        )
    assert bulk.status_code == 200, bulk.text
    results = [(r["host_id"], r["status"], r["error"], r["field"]) for r in bulk.json()["results"]]
    assert results == [
        ("h-0001", "accepted", None, None),
        ("h-0003", "refused", "forbidden", "reports[1].host_id"),
        ("h-0002", "refused", "bad_report", "reports[2].kvm"),
    ]
    with deps.db.transaction() as conn:
        rows = conn.execute("SELECT host_id, source FROM reports ORDER BY host_id").fetchall()
        rejected = conn.execute(
            "SELECT object_id, actor FROM audit_log WHERE event = 'report_rejected'"
        ).fetchall()
    assert [(r["host_id"], r["source"]) for r in rows] == [("h-0001", "push"), ("h-0002", "push")]
    assert [(r["object_id"], r["actor"]) for r in rejected] == [("h-0002", "rita")]


def test_bulk_push_is_bounded(api: ApiServer, fleet: Any) -> None:
    with api.client("alice") as http:
        too_many = http.post("/api/v1/reports", json={"reports": [good_report("h-0001")] * 1001})
        assert (too_many.status_code, too_many.json()["field"]) == (422, "reports")
        huge = http.post("/api/v1/reports", content=b'{"reports": [' + b" " * (5 * 1024 * 1024) + b"]}")
        assert (huge.status_code, huge.json()["error"]) == (413, "too_large")
