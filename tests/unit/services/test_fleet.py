"""FleetService and FleetViews: registration, flags, maintenance, manual activation, reads."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest

from autorecovery.services.fleet import HostSpec
from models.errors import BadReport, BrokerUnavailable, Conflict, InvalidInput, NotFound
from tests.fakes.ports import good_report
from tests.unit.services.world import CLUSTER, MAX_AGE_S, T0, S, World


def test_register_cluster_is_audited(world: World) -> None:
    assert world.fleet.register_cluster(CLUSTER, "alice") is True
    assert world.fleet.register_cluster(replace(CLUSTER, min_version="4.6"), "bob") is False
    created, updated = world.audit(object_type="cluster")
    assert (created["event"], created["actor"]) == ("cluster_registered", "alice")
    assert (updated["event"], updated["actor"], updated["details"]["min_version"]) == (
        "cluster_updated",
        "bob",
        "4.6",
    )


def test_register_hosts_is_all_or_nothing(world: World) -> None:
    world.fleet.register_cluster(CLUSTER, "admin")
    before = world.audit()
    with pytest.raises(InvalidInput) as info:
        world.fleet.register_hosts(
            [HostSpec("h1", "c1", "http://u1"), HostSpec("h2", "nope", "http://u2")], "alice"
        )
    assert info.value.field == "cluster" and "h2" in str(info.value)
    assert world.fleet.register_hosts([HostSpec("h0", "c1", "http://u0")], "alice") == ["h0"]
    with pytest.raises(Conflict):
        world.fleet.register_hosts(
            [HostSpec("h1", "c1", "http://u1"), HostSpec("h0", "c1", "http://again")], "alice"
        )
    with world.db.transaction() as conn:
        assert [r[0].id for r in world.repos.hosts.list_hosts(conn)] == ["h0"]
    registered = [e for e in world.audit() if e not in before]
    assert [(e["event"], e["object_id"], e["actor"]) for e in registered] == [
        ("host_registered", "h0", "alice")
    ]
    assert world.host("h0").agent_url == "http://u0"
    assert world.db.rollbacks == 2


def test_request_activation_queues_a_manual_activation(world: World) -> None:
    world.register("h1")
    act_id = world.fleet.request_activation("h1", "alice")
    assert world.enqueue.calls == [(act_id, "h1", "manual", "alice")]
    act = world.act(act_id)
    assert (act.state, act.trigger, act.actor) == ("queued", "manual", "alice")
    [entry] = world.audit(event="activation_queued")
    assert (entry["actor"], entry["reason"], entry["details"]["trigger"]) == (
        "alice",
        "requested by an admin",
        "manual",
    )


def test_request_activation_is_refused_when_up_held_or_unknown(world: World) -> None:
    world.register("h1", "h2")
    world.set_status("h1", S.UP)
    with pytest.raises(Conflict) as up:
        world.fleet.request_activation("h1", "alice")
    assert up.value.details == {"status": "up"}
    held = world.queue("h2", "auto-1")
    with pytest.raises(Conflict) as busy:
        world.fleet.request_activation("h2", "alice")
    assert busy.value.details["holder"]["id"] == held
    with pytest.raises(NotFound):
        world.fleet.request_activation("ghost", "alice")
    assert world.enqueue.calls == []
    assert [a.id for a in world.activations("h2")] == [held]
    assert world.activations("h1") == []


def test_activate_audits_a_refusal(world: World) -> None:
    world.register("h1", "h2")
    world.set_status("h1", S.UP)
    held = world.queue("h2", "auto-1")
    with pytest.raises(Conflict):
        world.fleet.activate("h1", "alice")
    with pytest.raises(Conflict):
        world.fleet.activate("h2", "bob")
    refused = world.audit(event="activation_refused")
    assert [(e["object_id"], e["actor"], e["reason"]) for e in refused] == [
        ("h1", "alice", "already_up"),
        ("h2", "bob", "activation_in_flight"),
    ]
    assert refused[1]["details"]["holder_id"] == held


def test_a_manual_activation_of_a_host_whose_fresh_report_shows_a_problem_needs_force(world: World) -> None:
    world.register("h1")
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    world.monitoring.tick()
    assert world.host("h1").status is S.NON_OPERATIONAL
    with pytest.raises(Conflict) as refused:
        world.fleet.activate("h1", "alice")
    problems = [{"reason": "kvm_not_running", "detail": "kvm is not running"}]
    assert refused.value.details == {"problems": problems}
    assert world.enqueue.calls == [] and world.activations("h1") == []
    [entry] = world.audit(event="activation_refused")
    assert (entry["actor"], entry["reason"]) == ("alice", "host_has_problems")
    assert entry["details"]["problems"] == refused.value.details["problems"]

    act_id = world.fleet.activate("h1", "alice", force=True)
    assert world.enqueue.calls == [(act_id, "h1", "manual", "alice")]
    [forced] = world.audit(event="activation_forced")
    assert (forced["actor"], forced["reason"], forced["details"]["activation_id"]) == (
        "alice",
        "host_has_problems",
        act_id,
    )
    [queued] = world.audit(event="activation_queued")
    assert queued["reason"] == "forced by an admin despite problems"


def test_a_stale_or_unanswered_report_does_not_ask_for_force(world: World) -> None:
    world.register("h1", "h2")  # h1's agent does not answer
    world.agents.reports["h2"] = good_report("h2", T0, kvm=False)
    world.monitoring.tick()
    world.clock.advance(MAX_AGE_S + 1)  # h2's report is stale now: it says nothing fresh
    assert world.fleet.activate("h1", "alice")
    assert world.fleet.activate("h2", "alice")
    assert world.audit(event="activation_forced") == []


def test_request_activation_with_the_broker_down_closes_the_record(world: World) -> None:
    world.register("h1")
    world.enqueue.failing = True
    with pytest.raises(BrokerUnavailable):
        world.fleet.request_activation("h1", "alice")
    [act] = world.activations("h1")
    assert (act.state, act.outcome) == ("failed", "not_enqueued")
    [entry] = world.audit(object_id="h1", event="activation_not_enqueued")
    assert entry["actor"] == "alice"  # the admin's activation, not the system's
    world.enqueue.failing = False
    assert world.fleet.request_activation("h1", "alice")  # the host is not held by the dead record


def test_set_autorecovery_is_audited_with_the_actor(world: World) -> None:
    world.register("h1")
    world.fleet.set_autorecovery("h1", False, "alice")
    world.fleet.set_autorecovery("h1", True, "bob")
    off, on = world.audit(object_id="h1", event="autorecovery_disabled") + world.audit(
        object_id="h1", event="autorecovery_enabled"
    )
    assert (off["actor"], off["details"]) == ("alice", {"previous": True, "enabled": False})
    assert (on["actor"], on["details"]) == ("bob", {"previous": False, "enabled": True})
    assert world.host("h1").autorecovery is True
    before = copy.deepcopy(world.db.state)
    with pytest.raises(NotFound):
        world.fleet.set_autorecovery("ghost", False, "alice")
    assert world.db.state == before


def test_set_maintenance(world: World) -> None:
    world.register("h1", "h2")
    world.fleet.set_maintenance("h1", "alice", "disk swap")
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.detail) == (S.MAINTENANCE, "maintenance", "disk swap")
    assert world.audit(event="status_changed", object_id="h1")[0]["actor"] == "alice"
    world.queue("h2")
    with pytest.raises(Conflict):
        world.fleet.set_maintenance("h2", "alice", None)
    assert world.host("h2").status is S.UNASSIGNED


REPORT_BODY: dict[str, Any] = {
    "host_id": "h1",
    "reported_at": "2026-11-24T11:59:58Z",
    "kvm": True,
    "version": "4.5.2",
    "cpu_flags": ["vmx"],
    "networks": {"mgmt": True},
    "storage_domains": {"sd-1": True},
    "vms_running": 1,
    "mem_free_mb": 4096,
}


def test_receive_report_stores_a_valid_report(world: World) -> None:
    world.register("h1")
    report, stored = world.fleet.receive_report("h1", dict(REPORT_BODY), "agent")
    assert report.source == "push" and stored
    assert world.stored_report("h1") == report


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**REPORT_BODY, "kvm": 1}, "kvm"),
        ({**REPORT_BODY, "host_id": "h2"}, "host_id"),
        ({k: v for k, v in REPORT_BODY.items() if k != "version"}, "version"),
        ("nope", "report"),
    ],
)
def test_receive_report_with_a_bad_report_stores_no_report(world: World, body: Any, field: str) -> None:
    world.register("h1")
    with pytest.raises(BadReport) as info:
        world.fleet.receive_report("h1", body, "agent")
    assert info.value.field == field
    assert world.stored_report("h1") is None


def test_receive_report_for_an_unknown_host(world: World) -> None:
    with pytest.raises(NotFound):
        world.fleet.receive_report("ghost", dict(REPORT_BODY), "agent")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kvm": "yes"}, "kvm"),
        ({"mem_free_mb": 2**31}, "mem_free_mb"),
        ({"networks": {"mg\x00mt": True}}, "networks.mg"),
    ],
    ids=["mistyped", "count above integer", "nul in a name"],
)
def test_receive_report_rejects_stores_nothing_and_audits(
    world: World, changes: dict[str, Any], field: str
) -> None:
    world.register("h1")
    with pytest.raises(BadReport) as info:
        world.fleet.receive_report("h1", {**REPORT_BODY, **changes}, "agent-h1")
    named = info.value.field
    assert named.startswith(field) and "\x00" not in named  # printable: it is stored and logged
    assert world.stored_report("h1") is None
    [entry] = world.audit(event="report_rejected")
    assert (entry["actor"], entry["reason"], entry["details"]["field"]) == ("agent-h1", named, named)


def test_receive_report_does_not_replace_a_newer_one(world: World) -> None:
    world.register("h1")
    newer, stored = world.fleet.receive_report("h1", dict(REPORT_BODY), "agent")
    assert stored is True
    older, stored = world.fleet.receive_report(
        "h1", {**REPORT_BODY, "reported_at": "2026-11-24T11:00:00Z", "kvm": False}, "agent"
    )
    assert stored is False
    assert world.stored_report("h1") == newer


def test_plan_says_what_the_tick_would_do_and_changes_nothing(world: World) -> None:
    world.register("h1", "h2", "h3", "h4")
    world.set_status("h1", S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
    world.set_status("h2", S.UP)
    world.set_status("h4", S.MAINTENANCE)
    with world.db.transaction() as conn:
        world.repos.hosts.upsert_reports(
            conn, [good_report("h1", T0), good_report("h2", T0, kvm=False), good_report("h4", T0)], T0
        )
    before = copy.deepcopy(world.db.state)
    plan = {p["host_id"]: p for p in world.views.plan()}
    assert world.db.state == before
    assert world.enqueue.calls == []
    assert (plan["h1"]["action"], plan["h1"]["code"], plan["h1"]["problems"]) == ("activate", "activate", [])
    assert (plan["h2"]["action"], plan["h2"]["next_status"], plan["h2"]["code"]) == (
        "skip",
        "non_operational",
        "has_problems",
    )
    assert plan["h2"]["problems"] == [
        {"reason": "kvm_not_running", "detail": "kvm is not running", "repairable": False}
    ]
    assert (plan["h3"]["action"], plan["h3"]["code"]) == ("skip", "no_report")
    assert (plan["h4"]["action"], plan["h4"]["code"]) == ("skip", "maintenance")
    assert [p["host_id"] for p in world.views.plan(cluster_id="c1", limit=2)] == ["h1", "h2"]


def test_describe_explains_why_a_host_is_not_back(world: World) -> None:
    world.register("h1")
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    world.monitoring.tick()
    d = world.views.describe("h1")
    assert d["status"] == "non_operational"
    assert d["why_not_recovered"] == {
        "code": "has_problems",
        "detail": "kvm_not_running: kvm is not running",
        "at": T0.isoformat(),
    }
    assert d["last_decision"]["code"] == "has_problems"
    assert d["activation"] is None
    with pytest.raises(NotFound):
        world.views.describe("ghost")


def test_why_not_recovered_says_since_when_the_decision_holds(world: World) -> None:
    world.register("h1")
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    world.monitoring.tick()
    world.clock.advance(20)
    world.agents.reports["h1"] = good_report("h1", world.clock(), kvm=False)
    world.monitoring.tick()  # the same decision: it holds since the first tick
    assert world.views.describe("h1")["why_not_recovered"]["at"] == T0.isoformat()
    with world.db.transaction() as conn:  # a report the tick has not judged yet
        world.repos.hosts.upsert_reports(conn, [good_report("h1", world.clock(), kvm=True, networks={})], T0)
    world.clock.advance(1)
    why = world.views.describe("h1")["why_not_recovered"]
    assert why["code"] == "has_problems" and "mgmt" in why["detail"]
    assert why["at"] == world.clock().isoformat()


def test_delete_host_keeps_the_audit_trail(world: World) -> None:
    world.register("h1", "h2")
    world.queue("h2")
    world.fleet.delete_host("h1", "alice")
    with pytest.raises(Conflict):
        world.fleet.delete_host("h2", "alice")
    with pytest.raises(NotFound):
        world.fleet.delete_host("h1", "alice")
    assert world.events("h1") == ["host_registered", "host_deleted"]
    assert world.views.counts()["hosts_by_status"] == {"unassigned": 1}


@pytest.mark.parametrize("reported_at", ["2026-11-24T13:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_pushed_report_dated_ahead_is_refused_and_never_stored(world: World, reported_at: str) -> None:
    world.register("h1")
    with pytest.raises(BadReport) as info:
        world.fleet.receive_report("h1", {**REPORT_BODY, "reported_at": reported_at}, "agent")
    assert info.value.field == "reported_at" and "ahead of the collector's clock" in info.value.message
    assert world.stored_report("h1") is None
    # Within the skew it is taken (a clock a little fast is not a bad agent).
    _, stored = world.fleet.receive_report("h1", {**REPORT_BODY, "reported_at": "2026-11-24T12:00:20Z"}, "a")
    assert stored


def test_a_pushed_report_nested_too_deeply_is_refused(world: World) -> None:
    world.register("h1")
    deep: Any = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(BadReport, match="nested deeper than 32"):
        world.fleet.receive_report("h1", {**REPORT_BODY, "extra": deep}, "agent")
    assert world.stored_report("h1") is None
