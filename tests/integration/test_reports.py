"""Malformed reports, pulled or pushed, are rejected naming the field, and nothing is stored."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from autorecovery.services.fleet import HostSpec
from models.domain import Cluster
from models.errors import BadReport, NotFound
from tests.integration.conftest import host_status

GOOD = {"host_id": "h-bad", "reported_at": "2026-11-24T12:00:00Z", "kvm": True,
        "version": "4.5.2", "cpu_flags": ["vmx"], "networks": {"mgmt": True},
        "storage_domains": {"sd-1": True}, "vms_running": 1, "mem_free_mb": 100}

BAD_BODIES = [
    ({k: v for k, v in GOOD.items() if k != "kvm"}, "kvm"),
    ({**GOOD, "vms_running": "three"}, "vms_running"),
    ({**GOOD, "vms_running": True}, "vms_running"),
    ({**GOOD, "networks": {"mgmt": "up"}}, "networks.mgmt"),
    ({**GOOD, "reported_at": "yesterday"}, "reported_at"),
    ({**GOOD, "host_id": "h-other"}, "host_id"),
    (["not", "an", "object"], "report"),
]


class _BadAgent(BaseHTTPRequestHandler):
    body: Any = None

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        data = json.dumps(type(self).body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def bad_agent() -> Iterator[tuple[str, type[_BadAgent]]]:
    handler = type("Agent", (_BadAgent,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _register(fleet_service: Any, agent_url: str) -> None:
    fleet_service.register_cluster(
        Cluster("c-bad", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"})), "test"
    )
    fleet_service.register_hosts([HostSpec("h-bad", "c-bad", agent_url)], "test")


def _stored_report(deps: Any) -> dict[str, Any] | None:
    with deps.db.transaction() as conn:
        row = conn.execute("SELECT * FROM reports WHERE host_id = 'h-bad'").fetchone()
    return dict(row) if row else None


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_pulled_bad_report_is_recorded_as_unusable_never_as_valid(
    body: Any, field: str, bad_agent: Any, fleet_service: Any, worker: Any, tick: Any, deps: Any
) -> None:
    url, handler = bad_agent
    handler.body = body
    _register(fleet_service, url)
    tick()
    row = host_status(deps, "h-bad")
    assert (row["status"], row["reason"]) == ("non_responsive", "bad_report")
    assert field in row["detail"]
    stored = _stored_report(deps)
    assert stored is not None
    assert stored["agent_reachable"] is False and field in stored["error"]
    assert stored["kvm"] is False and stored["storage_domains"] == {}
    with deps.db.transaction() as conn:
        audit = conn.execute(
            "SELECT reason, details FROM audit_log WHERE object_id = 'h-bad' "
            "AND event = 'status_changed'"
        ).fetchall()
    assert any(a["reason"] == "bad_report" and field in a["details"]["detail"] for a in audit)
    with deps.db.transaction() as conn:
        acts = conn.execute("SELECT count(*) AS n FROM activations").fetchone()
    assert acts is not None and acts["n"] == 0


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_pushed_bad_report_names_the_field_stores_nothing_and_is_audited(
    body: Any, field: str, fleet_service: Any, deps: Any
) -> None:
    _register(fleet_service, "http://127.0.0.1:9/agents/h-bad")
    with pytest.raises(BadReport) as err:
        fleet_service.receive_report("h-bad", body, actor="test")
    assert err.value.field == field
    assert _stored_report(deps) is None
    with deps.db.transaction() as conn:
        rejected = conn.execute(
            "SELECT details FROM audit_log WHERE event = 'report_rejected'"
        ).fetchall()
    assert [r["details"]["field"] for r in rejected] == [field]


def test_pushed_report_for_unknown_host_is_refused(fleet_service: Any, deps: Any) -> None:
    with pytest.raises(NotFound):
        fleet_service.receive_report("h-nobody", {**GOOD, "host_id": "h-nobody"}, actor="test")
    with deps.db.transaction() as conn:
        row = conn.execute("SELECT count(*) AS n FROM reports").fetchone()
    assert row is not None and row["n"] == 0


def test_pushed_good_report_is_stored_and_spares_a_pull(
    fleet_service: Any, deps: Any
) -> None:
    _register(fleet_service, "http://127.0.0.1:9/agents/h-bad")
    report, _ = fleet_service.receive_report("h-bad", GOOD, actor="test")
    stored = _stored_report(deps)
    assert stored is not None and stored["source"] == "push"
    assert stored["storage_domains"] == {"sd-1": True} and report.kvm is True
