"""MonitoringService.tick: pulls, transitions, decisions, queueing, the reaper."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from autorecovery.services.fleet import HostSpec
from autorecovery.services.monitoring import TickResult
from models.domain import HostStatus
from tests.fakes.ports import good_report
from tests.unit.services.world import CLUSTER, T0, TICK, S, World, build_world


def test_tick_queues_registered_hosts_with_clean_reports(world: World) -> None:
    world.register("h1", "h2", "h3")
    world.healthy("h1", "h2")
    result = world.monitoring.tick()
    assert isinstance(result, TickResult)
    assert (result.hosts, result.batches, result.pulled, result.enqueued) == (3, 2, 3, 2)
    assert sorted(world.enqueue.hosts()) == ["h1", "h2"]
    assert {(t, a) for _, _, t, a in world.enqueue.calls} == {("auto", "auto")}
    for activation_id, host_id, _, _ in world.enqueue.calls:
        act = world.act(activation_id)
        assert (act.host_id, act.state, act.trigger, act.actor) == (host_id, "queued", "auto", "auto")
        assert world.host(host_id).in_flight
    assert world.row("h1")["last_decision"] == "activate"
    # h3 never answered: still unassigned (never heard from), skipped, explained.
    h3 = world.host("h3")
    assert (h3.status, h3.reason) == (S.UNASSIGNED, None)
    assert world.row("h3")["last_decision"] == "agent_unreachable"
    assert world.activations("h3") == []
    assert result.decisions == {"activate": 2, "agent_unreachable": 1}
    stored = world.stored_report("h1")
    assert stored is not None and stored.kvm and stored.source == "pull"


def test_tick_twice_queues_one_activation(world: World) -> None:
    world.register("h1")
    world.healthy("h1")
    first = world.monitoring.tick()
    world.clock.advance(10)
    world.healthy("h1")
    second = world.monitoring.tick()
    assert (first.enqueued, second.enqueued) == (1, 0)
    assert len(world.enqueue.calls) == 1
    assert len(world.activations("h1")) == 1
    assert len(world.audit(event="activation_queued")) == 1
    assert world.row("h1")["last_decision"] == "activation_in_flight"
    assert second.decisions == {"activation_in_flight": 1}


def test_an_up_host_with_a_problem_goes_out_and_is_not_activated(world: World) -> None:
    world.register("h1")
    world.set_status("h1", S.UP)
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    result = world.monitoring.tick()
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.detail) == (S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
    assert h1.status_changed_at == T0
    assert result.transitions == 1 and result.enqueued == 0
    assert world.enqueue.calls == []
    assert world.activations("h1") == []
    [change] = world.audit(event="status_changed", actor="auto")
    assert change["reason"] == "kvm_not_running"
    assert change["details"] == {"from": "up", "to": "non_operational", "detail": "kvm is not running"}
    assert (world.row("h1")["last_decision"], world.row("h1")["last_decision_detail"]) == (
        "has_problems",
        "kvm_not_running: kvm is not running",
    )


def test_an_unheard_up_host_goes_non_responsive(world: World) -> None:
    world.register("h1", "h2")
    world.set_status("h1", S.UP)
    world.set_status("h2", S.UP)
    world.agents.reports["h1"] = good_report("h1", T0)
    world.agents.unavailable.add("h1")
    world.agents.reports["h2"] = good_report("h2", T0 - timedelta(minutes=5))  # old data, answered
    world.monitoring.tick()
    assert (world.host("h1").status, world.host("h1").reason) == (S.NON_RESPONSIVE, "agent_unreachable")
    assert (world.host("h2").status, world.host("h2").reason) == (S.NON_RESPONSIVE, "stale_report")
    assert world.enqueue.calls == []


def test_a_host_still_faulty_is_left_out_until_its_fault_clears(world: World) -> None:
    world.register("h1")
    world.set_status("h1", S.NON_OPERATIONAL, "storage_domain_unreachable", "storage domain sd-1 unreachable")
    world.agents.reports["h1"] = good_report("h1", T0, storage_domains={"sd-1": False})
    world.monitoring.tick()
    assert world.enqueue.calls == []
    assert world.audit(event="status_changed") == []  # same reason, same detail: no change
    world.clock.advance(10)
    world.healthy("h1")
    world.monitoring.tick()
    assert world.enqueue.hosts() == ["h1"]


@pytest.mark.parametrize(
    ("status", "autorecovery", "code"),
    [
        (S.MAINTENANCE, True, "maintenance"),
        (S.NON_OPERATIONAL, False, "autorecovery_off"),
        (S.ERROR, True, "error_period"),
        (S.UP, True, "healthy"),
    ],
)
def test_tick_leaves_hosts_it_must_not_activate(
    world: World, status: HostStatus, autorecovery: bool, code: str
) -> None:
    world.register("h1")
    world.set_status("h1", status, "general", "set by the test")
    if not autorecovery:
        world.fleet.set_autorecovery("h1", False, "admin")
    world.healthy("h1")
    world.monitoring.tick()
    assert world.enqueue.calls == []
    assert world.activations("h1") == []
    assert world.host("h1").status is status
    assert world.row("h1")["last_decision"] == code


def test_a_freshly_pushed_report_is_not_pulled_again(world: World) -> None:
    world.register("h1", "h2")
    pushed = good_report("h1", T0 - timedelta(seconds=2))
    world.fleet.receive_report(
        "h1",
        {
            "host_id": "h1",
            "reported_at": pushed.reported_at.isoformat(),
            "kvm": True,
            "version": "4.5.2",
            "cpu_flags": ["vmx"],
            "networks": {"mgmt": True},
            "storage_domains": {"sd-1": True},
            "vms_running": 1,
            "mem_free_mb": 4096,
        },
        "agent",
    )
    world.healthy("h2")
    result = world.monitoring.tick()
    assert result.pulled == 1
    assert world.agents.pulls == 1
    assert sorted(world.enqueue.hosts()) == ["h1", "h2"]
    stored = world.stored_report("h1")
    assert stored is not None and stored.source == "push"


def test_a_failed_enqueue_closes_the_activation_and_the_next_tick_retries(world: World) -> None:
    world.register("h1")
    world.healthy("h1")
    world.enqueue.failing = True
    result = world.monitoring.tick()
    assert result.enqueued == 1
    [act] = world.activations("h1")
    assert (act.state, act.outcome, act.detail) == ("failed", "not_enqueued", "broker down")
    assert world.audit(event="activation_not_enqueued")[0]["reason"] == "broker_unavailable"
    world.enqueue.failing = False
    world.clock.advance(10)
    world.healthy("h1")
    world.monitoring.tick()
    assert world.enqueue.hosts() == ["h1"]


def test_the_reaper_abandons_a_stuck_activation_and_fences_its_holder(world: World) -> None:
    world.register("h1")
    world.healthy("h1")
    act_id = world.queue("h1")
    with world.db.transaction() as conn:
        fence = world.repos.activations.begin(conn, act_id, world.clock())
        assert world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    world.clock.advance(60)  # not yet past the running limit (70 s)
    assert world.housekeeping.run().reaped == 0
    assert world.act(act_id).state == "sending"
    world.clock.advance(20)
    world.healthy("h1")
    assert world.housekeeping.run().reaped == 1
    act = world.act(act_id)
    assert (act.state, act.outcome) == ("abandoned", "abandoned")
    h1 = world.host("h1")
    assert h1.fence == (fence or 0) + 1
    assert (h1.reason, h1.detail) == ("activation_failed", "activation abandoned: no result in time")
    [entry] = world.audit(event="activation_abandoned")
    assert entry["details"] == {"activation_id": act_id, "was": "sending"}
    # The old holder's token writes nothing now.
    with world.db.transaction() as conn:
        assert not world.repos.hosts.set_status(conn, "h1", "up", None, "late", world.clock(), fence=fence)
    # Its holder may have sent the init, which may still run: no second one before the longest
    # init time is over (review: the reap holds the host, audited).
    assert world.host("h1").init_hold_until is not None
    assert [e["event"] for e in world.audit(event="init_held")] == ["init_held"]
    world.monitoring.tick()
    assert world.enqueue.hosts() == []
    assert world.row("h1")["last_decision"] == "init_outcome_unknown"
    # And the host, recoverable, is not left behind: once the hold is over, the hold no longer
    # decides (here the domain, left with no up host for minutes, is what it waits for next).
    world.clock.advance((world.host("h1").init_hold_until - world.clock()).total_seconds() + 1)
    world.healthy("h1")
    world.monitoring.tick()
    assert world.row("h1")["last_decision"] == "storage_domain_inactive"


def test_the_reaper_expires_a_queued_activation_that_never_ran(world: World) -> None:
    world.register("h1")
    world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
    act_id = world.queue("h1")
    world.clock.advance(61)
    world.agents.reports["h1"] = good_report("h1", world.clock(), kvm=False)
    assert world.housekeeping.run().reaped == 1
    assert world.act(act_id).detail == "no result in time (was queued)"
    world.monitoring.tick()
    assert world.host("h1").status is S.NON_OPERATIONAL


def test_statements_per_batch_do_not_grow_with_the_batch(world: World) -> None:
    def run(n: int) -> int:
        w = build_world(replace(TICK, batch_size=500))
        try:
            w.fleet.register_cluster(CLUSTER, "admin")
            w.fleet.register_hosts([HostSpec(f"h{i:04d}", "c1", "http://u") for i in range(n)], "admin")
            for i in range(n):
                w.agents.reports[f"h{i:04d}"] = good_report(f"h{i:04d}", T0)
            return w.monitoring.tick().statements
        finally:
            w.close()

    assert run(3) == run(300)


@pytest.mark.parametrize(
    "ahead", [timedelta(hours=1), datetime(9999, 12, 31, tzinfo=UTC) - T0], ids=["1h", "9999"]
)
def test_a_stored_push_dated_ahead_does_not_stop_the_pulls(world: World, ahead: timedelta) -> None:
    world.register("h1")
    future = replace(good_report("h1", T0 + ahead), source="push")
    with world.db.transaction() as conn:  # stored before such dates were refused
        world.repos.hosts.upsert_reports(conn, [future], T0)
    world.clock.advance(10)
    world.healthy("h1")
    world.monitoring.tick()
    stored = world.stored_report("h1")
    assert stored is not None and stored.source == "pull" and stored.reported_at < world.clock()
    assert world.host("h1").in_flight  # recoverable from the fresh report: queued


def test_a_host_changed_between_the_batch_reads_is_judged_on_its_new_row(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch reads a few columns, pulls, then reads whole the hosts to evaluate: a change in
    between (autorecovery turned off) is what the evaluation sees, and what its key remembers."""
    world.register("h1")
    world.set_status("h1", S.NON_OPERATIONAL)
    world.healthy("h1")
    read_whole = world.repos.hosts.batch_rows

    def racing(conn: object, host_ids: list[str]) -> object:
        world.repos.hosts.set_autorecovery(conn, "h1", False)  # an operator, during the pull
        return read_whole(conn, host_ids)

    monkeypatch.setattr(world.repos.hosts, "batch_rows", racing)
    first = world.monitoring.tick()
    assert (first.evaluated, first.enqueued) == (1, 0)
    assert world.enqueue.calls == []
    assert world.row("h1")["last_decision"] == "autorecovery_off"
    monkeypatch.setattr(world.repos.hosts, "batch_rows", read_whole)
    later = []
    for _ in range(2):  # the decision written changed the row: one more evaluation, then none
        world.clock.advance(TICK.tick_interval_s)
        world.healthy("h1")
        later.append(world.monitoring.tick())
    assert [(t.evaluated, t.decisions) for t in later] == [
        (1, {"autorecovery_off": 1}),
        (0, {"autorecovery_off": 1}),
    ]
    assert world.enqueue.calls == []
