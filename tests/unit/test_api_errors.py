"""The error shape and the routes' mapping, over ASGI with the in-memory store (no servers)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.deps import Services
from api.errors import error_response, field_name, from_domain
from autorecovery.bootstrap import build_services
from autorecovery.services import utcnow
from autorecovery.services.fleet import HostSpec
from autorecovery.settings import Settings
from models.agent_url import AgentUrlPolicy
from models.domain import Cluster
from models.errors import (
    BadReport,
    BrokerUnavailable,
    Conflict,
    InvalidInput,
    NotFound,
    StoreUnavailable,
)
from tests.fakes import fake_adapters

ALICE = "alice-7Rk2pQ9xVm4LsT8w"
VIC = "vic-N5hJ3cW8zKq6Yd2fBx7"
ADMIN = {"Authorization": f"Bearer {ALICE}"}
VIEWER = {"Authorization": f"Bearer {VIC}"}
JSON = {"content-type": "application/json"}
#: What the world's setup wrote, newest first: a refused request adds nothing to it.
SETUP_EVENTS = [("host_registered", "test", None), ("cluster_registered", "test", None)]


class World:
    """An app over the memory store, with the activations it sent to the 'broker'."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, str]] = []
        self.sent_domains: list[tuple[str, str, str, str]] = []
        settings = Settings(
            api_tokens=f"alice:admin:{ALICE},vic:viewer:{VIC}",
            report_max_age_s=30.0,
            charge_limit=3,
            # Explicit: the integration suite, run first, puts its own caps in the environment.
            cluster_cap="25%",
            fleet_cap=50,
        )
        self.container = build_services(settings, fake_adapters(), self._enqueue, self._enqueue_domain)
        self.db = self.container.db
        self.fleet, self.views = self.container.fleet, self.container.views
        self.safety, self.storage = self.container.safety, self.container.storage
        self.vmruns = self.container.vmruns
        self.fleet.register_cluster(Cluster("c-1", frozenset({"mgmt"})), "test")
        self.fleet.register_hosts([HostSpec("h-1", "c-1", "http://127.0.0.1:9/h-1")], "test")
        self.app = create_app(settings, services=Services(self.container))

    def _enqueue(self, activation_id: str, host_id: str, trigger: str, actor: str) -> None:
        self.sent.append((activation_id, host_id, trigger, actor))

    def _enqueue_domain(self, activation_id: str, sd_id: str, trigger: str, actor: str) -> None:
        self.sent_domains.append((activation_id, sd_id, trigger, actor))

    def call(self, method: str, path: str, *, raise_errors: bool = True, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=raise_errors)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def events(self) -> list[tuple[str, str, str | None]]:
        return [(e["event"], e["actor"], e["reason"]) for e in self.views.audit_log(limit=1000)]


@pytest.fixture
def world() -> World:
    return World()


def shape(answer: httpx.Response) -> tuple[int, str, str | None]:
    body = answer.json()
    assert {"error", "message", "field"} <= set(body), body
    assert isinstance(body["message"], str) and body["message"]
    return answer.status_code, body["error"], body["field"]


@pytest.mark.parametrize(
    ("loc", "name"),
    [
        (("body", "agent_url"), "agent_url"),
        (("body", "cpu_flags", 1), "cpu_flags[1]"),
        (("body", "attempts", 2, "ok"), "attempts[2].ok"),
        (("body", "attempts", 0), "attempts[0]"),
        (("query", "limit"), "limit"),
        (("path", "host_id"), "host_id"),
        (("body",), "body"),
        (("body", 12), "body"),
        ((), "body"),
    ],
)
def test_field_name(loc: tuple[Any, ...], name: str) -> None:
    assert field_name(loc) == name


@pytest.mark.parametrize(
    ("exc", "status", "code", "field"),
    [
        (NotFound("host", "h-9"), 404, "not_found", "host_id"),
        (NotFound("cluster", "c-9"), 404, "not_found", "cluster_id"),
        (
            Conflict("held", {"holder": {"id": "a-1", "actor": "bob", "trigger": "manual"}}),
            409,
            "activation_in_flight",
            None,
        ),
        (Conflict("up", {"status": "up"}), 409, "already_up", None),
        (Conflict("taken", {"host_id": "h-1"}), 409, "already_exists", "id"),
        (BadReport("vms_running", "must be an integer"), 422, "bad_report", "vms_running"),
        (InvalidInput("cluster", "unknown"), 422, "invalid_input", "cluster"),
        (BrokerUnavailable("down"), 503, "broker_unavailable", None),
        (StoreUnavailable("down"), 503, "unavailable", None),
        (RuntimeError("boom"), 500, "internal_error", None),
    ],
)
def test_domain_errors_map_to_one_shape(exc: Exception, status: int, code: str, field: str | None) -> None:
    response = from_domain(exc).response()
    body = json.loads(bytes(response.body))
    assert (response.status_code, body["error"], body["field"]) == (status, code, field)
    assert "boom" not in body["message"], "internal errors are not described to callers"
    if status == 503:
        assert response.headers["retry-after"]


def test_extra_keys_never_replace_the_shape() -> None:
    body = json.loads(bytes(error_response(409, "x", "m", None, extra={"error": "y", "status": "up"}).body))
    assert body == {"error": "x", "message": "m", "field": None, "status": "up"}


def test_unauthenticated_and_viewer_writes(world: World) -> None:
    answer = world.call("POST", "/api/v1/hosts/h-1/activate")
    assert shape(answer) == (401, "unauthorized", None)
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert (
        shape(world.call("POST", "/api/v1/hosts/h-1/activate", headers={"Authorization": "Bearer x"}))[0]
        == 401
    )
    assert shape(world.call("POST", "/api/v1/hosts/h-1/activate", headers={"Authorization": ALICE}))[0] == 401
    assert shape(world.call("POST", "/api/v1/hosts/h-1/activate", headers=VIEWER)) == (403, "forbidden", None)
    # Malformed input from a bad caller is still refused for the caller first.
    assert world.call("POST", "/api/v1/hosts", content=b"{", headers=JSON).status_code == 401
    assert world.call("POST", "/api/v1/hosts", content=b"{", headers={**JSON, **VIEWER}).status_code == 403
    assert world.sent == [] and world.events() == SETUP_EVENTS


def test_malformed_bodies_name_the_field(world: World) -> None:
    admin = {**JSON, **ADMIN}
    assert shape(world.call("POST", "/api/v1/hosts", content=b"{", headers=admin)) == (
        422,
        "invalid_input",
        "body",
    )
    assert shape(world.call("POST", "/api/v1/hosts", content=b"\xff\xfe", headers=admin)) == (
        422,
        "invalid_input",
        "body",
    )
    answer = world.call("POST", "/api/v1/hosts", json={"id": "h-2", "cluster": "c-1"}, headers=ADMIN)
    assert shape(answer) == (422, "invalid_input", "agent_url")
    assert answer.json()["errors"][0]["field"] == "agent_url"
    answer = world.call("POST", "/api/v1/hosts", content=b'{"\\ud800": 1}', headers=admin)
    assert shape(answer)[0] == 422, "a lone surrogate in a key is reported, not a crash"
    assert shape(world.call("POST", "/api/v1/clusters", content=b"x" * 2_000_000, headers=admin)) == (
        413,
        "too_large",
        "body",
    )
    assert world.events() == SETUP_EVENTS


def test_manual_activation_and_a_refusal_are_audited(world: World) -> None:
    first = world.call("POST", "/api/v1/hosts/h-1/activate", headers=ADMIN)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["task_id"] == body["activation_id"] and body["state"] == "queued"
    assert world.sent == [(body["activation_id"], "h-1", "manual", "alice")]
    second = world.call("POST", "/api/v1/hosts/h-1/activate", headers=ADMIN)
    assert shape(second) == (409, "activation_in_flight", None)
    assert second.json()["holder"]["id"] == body["activation_id"]
    assert "manual by alice" in second.json()["message"]
    assert world.events()[0] == ("activation_refused", "alice", "activation_in_flight")
    assert shape(world.call("DELETE", "/api/v1/hosts/h-1", headers=ADMIN))[:2] == (
        409,
        "activation_in_flight",
    )


def test_activating_a_host_whose_fresh_report_shows_a_problem_needs_force(world: World) -> None:
    report = {"host_id": "h-1", "reported_at": utcnow().isoformat(), "kvm": False, "version": "4.5",
              "cpu_flags": [], "networks": {"mgmt": True}, "storage_domains": {}, "vms_running": 0,
              "mem_free_mb": 1}
    assert world.call("POST", "/api/v1/hosts/h-1/report", json=report, headers=ADMIN).status_code == 200
    refused = world.call("POST", "/api/v1/hosts/h-1/activate", headers=ADMIN)
    assert shape(refused) == (409, "host_has_problems", "force")
    assert refused.json()["problems"] == [{"reason": "kvm_not_running", "detail": "kvm is not running"}]
    assert "kvm_not_running" in refused.json()["message"] and world.sent == []
    assert world.events()[0] == ("activation_refused", "alice", "host_has_problems")
    forced = world.call("POST", "/api/v1/hosts/h-1/activate?force=true", headers=ADMIN)
    assert forced.status_code == 202, forced.text
    assert world.sent == [(forced.json()["activation_id"], "h-1", "manual", "alice")]
    assert world.events()[0] == ("activation_forced", "alice", "host_has_problems")
    assert shape(world.call("POST", "/api/v1/hosts/h-1/activate?force=maybe", headers=ADMIN)) == (
        422,
        "invalid_input",
        "force",
    )


def test_why_not_recovered_says_when_the_decision_was_made(world: World) -> None:
    before = utcnow()
    shown = world.call("GET", "/api/v1/hosts/h-1", headers=VIEWER).json()
    why = shown["why_not_recovered"]
    assert why["code"] == "no_report" and why["at"] is not None
    assert before <= datetime.fromisoformat(why["at"]) <= utcnow()


def test_a_bad_pushed_report_is_audited_not_stored(world: World) -> None:
    report = {
        "host_id": "h-1",
        "reported_at": "2026-11-24T12:00:00Z",
        "kvm": True,
        "version": "4.5",
        "cpu_flags": [],
        "networks": {"mgmt": True},
        "storage_domains": {},
        "vms_running": "3",
        "mem_free_mb": 1,
    }
    answer = world.call("POST", "/api/v1/hosts/h-1/report", json=report, headers=ADMIN)
    assert shape(answer) == (422, "bad_report", "vms_running")
    assert world.events()[0] == ("report_rejected", "alice", "vms_running")
    assert world.db.state.reports == {}
    report["vms_running"] = 3
    answer = world.call("POST", "/api/v1/hosts/h-1/report", json=report, headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["stored"] is True
    assert shape(world.call("POST", "/api/v1/hosts/h-9/report", json=report, headers=ADMIN)) == (
        404,
        "not_found",
        "host_id",
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reported_at": "9999-12-31T23:59:59Z"}, "reported_at"),
        ({"extra": json.loads("[" * 41 + "]" * 41)}, "body"),
    ],
    ids=["dated ahead", "nested 41 deep"],
)
def test_a_pushed_report_dated_ahead_or_too_deep_is_refused_and_audited(
    world: World, changes: dict[str, object], field: str
) -> None:
    report = {
        "host_id": "h-1",
        "reported_at": utcnow().isoformat(),
        "kvm": True,
        "version": "4.5",
        "cpu_flags": [],
        "networks": {"mgmt": True},
        "storage_domains": {},
        "vms_running": 3,
        "mem_free_mb": 1,
        **changes,
    }
    answer = world.call("POST", "/api/v1/hosts/h-1/report", json=report, headers=ADMIN)
    assert shape(answer) == (422, "bad_report", field)
    assert world.events()[0] == ("report_rejected", "alice", field)
    assert world.db.state.reports == {}


def test_unknown_routes_outages_and_crashes_keep_the_shape(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert shape(world.call("GET", "/api/v1/nothing", headers=VIEWER)) == (404, "not_found", None)
    assert shape(world.call("PATCH", "/api/v1/hosts", headers=ADMIN))[:2] == (405, "method_not_allowed")
    world.db.unavailable = True
    assert shape(world.call("GET", "/api/v1/hosts", headers=VIEWER)) == (503, "unavailable", None)
    world.db.unavailable = False

    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(world.views, "list_hosts", boom)
    answer = world.call("GET", "/api/v1/hosts", headers=VIEWER, raise_errors=False)
    assert shape(answer) == (500, "internal_error", None)
    assert "secret detail" not in answer.text
    world.app.state.services = None
    assert shape(world.call("GET", "/api/v1/hosts", headers=VIEWER)) == (503, "starting", None)
    assert world.call("GET", "/healthz").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://metadata.google.internal/",
        "http://[fd00:ec2::254]/",
        "http://127.0.0.1:5432",
        "http://localhost:6379/",
    ],
)
def test_registering_a_forbidden_agent_url_is_a_422_naming_agent_url(world: World, url: str) -> None:
    world.fleet.agent_urls = AgentUrlPolicy.build([], [("127.0.0.1", 5432), ("127.0.0.1", 6379)])
    body = {"id": "h-9", "cluster": "c-1", "agent_url": url}
    answer = world.call("POST", "/api/v1/hosts", headers=ADMIN, json=body)
    assert shape(answer) == (422, "invalid_input", "agent_url")
    assert world.events() == SETUP_EVENTS
    assert world.call("GET", "/api/v1/hosts/h-9", headers=ADMIN).status_code == 404


def test_registering_an_agent_url_with_credentials_is_refused_with_where_they_go(world: World) -> None:
    body = {"id": "h-9", "cluster": "c-1", "agent_url": "http://admin:s3cret@10.0.0.9:9000"}
    answer = world.call("POST", "/api/v1/hosts", headers=ADMIN, json=body)
    assert shape(answer) == (422, "invalid_input", "agent_url")
    assert "per-host token" in answer.text and "docs/agent.md" in answer.text
    assert "s3cret" not in answer.text
    # The service refuses it too (the CLI's server-side commands, a changed URL): nothing written.
    world.fleet.agent_urls = AgentUrlPolicy.build([], [])
    with pytest.raises(InvalidInput, match="must not carry credentials"):
        world.fleet.register_hosts([HostSpec("h-9", "c-1", body["agent_url"])], "admin")
    assert world.events() == SETUP_EVENTS
