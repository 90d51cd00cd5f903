"""ActivationService.run: lock, fence, init, recheck, close."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime

import pytest

from autorecovery.adapters import keys
from autorecovery.adapters.agents import InitResult, Target
from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.locks import ObjectLock, holder_token
from autorecovery.services.activation import LockBusyRetry, Outcome
from models.domain import AgentState, Report
from models.errors import Conflict, StaleFence
from tests.fakes.ports import good_report
from tests.unit.services.world import T0, TICK, S, World, queued_out_host


def test_activation_happy_path_brings_the_host_up(world: World) -> None:
    act_id = queued_out_host(world)
    out = world.activation.run(act_id, "h1")
    assert out == Outcome(act_id, "h1", "up", "agent init ok; report clean", 1)
    assert out.as_dict()["outcome"] == "up"
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence, h1.in_flight) == (S.UP, None, 1, False)
    act = world.act(act_id)
    assert (act.state, act.outcome, act.fence) == ("done", "up", 1)
    assert act.started_at == T0 and act.ended_at == T0
    assert world.agents.init_calls == [("h1", 1, act_id)]
    assert world.events("h1")[-5:] == [
        "activation_queued",
        "activation_started",
        "status_changed",
        "status_changed",
        "activation_succeeded",
    ]
    to_init, to_up = world.audit(event="status_changed", object_id="h1")[-2:]
    assert (to_init["details"]["to"], to_up["details"]["to"]) == ("initializing", "up")
    assert {e["actor"] for e in world.audit(object_id="h1")[-4:]} == {"auto"}
    assert holder_token(world.redis, keys.host_lock("h1")) is None


def test_manual_activation_runs_with_autorecovery_off_and_carries_the_actor(world: World) -> None:
    world.register("h1")
    world.fleet.set_autorecovery("h1", False, "alice")
    world.set_status("h1", S.NON_OPERATIONAL, "kvm_not_running", "kvm is not running")
    world.healthy("h1")
    act_id = world.fleet.request_activation("h1", "alice")
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "up"
    started = world.audit(event="activation_started")[0]
    assert (started["actor"], started["reason"]) == ("alice", "manual")
    assert world.audit(event="activation_succeeded")[0]["actor"] == "alice"


def test_a_busy_lock_on_a_queued_activation_is_a_skip(world: World) -> None:
    act_id = queued_out_host(world)
    holder = ObjectLock(world.redis, keys.host_lock("h1"), 40.0)
    assert holder.acquire()
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "lock_busy"
    act = world.act(act_id)
    assert (act.state, act.outcome, act.reason) == ("skipped", "lock_busy", "lock_busy")
    [entry] = world.audit(event="activation_skipped")
    assert (entry["reason"], entry["actor"], entry["details"]) == (
        "lock_busy",
        "auto",
        {"activation_id": act_id},
    )
    assert world.agents.init_calls == []
    assert world.host("h1").status is S.NON_OPERATIONAL
    assert holder_token(world.redis, keys.host_lock("h1")) == holder.token
    holder.release()


def test_a_busy_lock_on_a_running_activation_is_retried(world: World) -> None:
    act_id = queued_out_host(world)
    with world.db.transaction() as conn:
        world.repos.activations.begin(conn, act_id, world.clock())
    holder = ObjectLock(world.redis, keys.host_lock("h1"), 40.0)
    assert holder.acquire()
    with pytest.raises(LockBusyRetry):
        world.activation.run(act_id, "h1")
    assert world.act(act_id).state == "sending"
    holder.release()


def test_a_fresh_report_with_a_problem_skips_without_init(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.reports["h1"] = good_report("h1", T0, networks={"mgmt": False})
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "has_problems"
    act = world.act(act_id)
    assert (act.state, act.outcome) == ("skipped", "has_problems")
    assert act.detail == "network_interface_down: network mgmt link down"
    assert world.agents.init_calls == []
    assert world.host("h1").status is S.NON_OPERATIONAL
    assert "activation_skipped" in world.events("h1")
    assert holder_token(world.redis, keys.host_lock("h1")) is None


def test_an_unreachable_agent_at_recheck_skips_without_init(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.unavailable.add("h1")
    assert world.activation.run(act_id, "h1").outcome == "agent_unreachable"
    assert world.agents.init_calls == []


def test_an_agent_init_failure_leaves_the_host_out_with_the_agents_reason(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.init_results["h1"] = InitResult(
        ok=False, reason="storage_domain_unreachable", detail="sd-1 connect timed out"
    )
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.detail) == ("failed", "sd-1 connect timed out")
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.detail) == (
        S.NON_OPERATIONAL,
        "storage_domain_unreachable",
        "sd-1 connect timed out",
    )
    act = world.act(act_id)
    assert (act.state, act.reason) == ("failed", "storage_domain_unreachable")
    assert world.audit(event="activation_failed")[0]["reason"] == "failed"


def test_an_unavailable_agent_at_init_fails_the_activation(world: World) -> None:
    act_id = queued_out_host(world)

    def init(target: Target, fence: int, activation_id: str) -> InitResult:
        world.agents.unavailable.add(target.host_id)
        return FakeAgentClient.init(world.agents, target, fence, activation_id)

    world.agents.init = init  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "failed"
    assert (world.host("h1").status, world.host("h1").reason) == (S.NON_OPERATIONAL, "activation_failed")


def test_a_host_unhealthy_after_init_is_not_reported_up(world: World) -> None:
    act_id = queued_out_host(world)

    def init(target: Target, fence: int, activation_id: str) -> InitResult:
        world.agents.reports["h1"] = good_report("h1", T0, kvm=False)
        return InitResult(ok=True)

    world.agents.init = init  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "unhealthy_after_init"
    assert (world.host("h1").status, world.host("h1").reason) == (S.NON_OPERATIONAL, "kvm_not_running")
    assert world.audit(event="activation_succeeded") == []


@pytest.mark.parametrize("claimed", [2, 43, 2**63 - 1, 2**80, None])
def test_an_agent_claiming_a_fence_never_issued_holds_the_host_and_never_moves_the_fence(
    world: World, claimed: int | None
) -> None:
    # PostgreSQL still holds our fence (1): nothing higher was ever issued, so whatever the agent
    # claims (just above, bigint's max, past it, nothing) is a security event, not a number.
    act_id = queued_out_host(world)
    world.agents.highest_fence["h1"] = 43 if claimed is None else claimed
    original = world.agents.init

    def refuse(target: Target, fence: int, activation_id: str) -> InitResult:
        if claimed is None:
            raise StaleFence("agent refused fence", None)
        return original(target, fence, activation_id)

    world.agents.init = refuse  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "agent_fence_ahead"
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence, h1.agent_hold) == (
        S.NON_OPERATIONAL,
        "agent_fence_ahead",
        1,
        "agent_fence_ahead",
    )
    assert h1.failures == 0  # a security event, not the host's failure
    assert world.act(act_id).state == "abandoned"
    [event] = world.audit(event="agent_fence_ahead")
    assert event["details"]["issued"] == 1
    assert holder_token(world.redis, keys.host_lock("h1")) is None
    # Held, for an admin too, until cleared.
    world.clock.advance(TICK.tick_interval_s)
    world.healthy("h1")
    act2 = world.queue("h1", "act-2")
    assert world.activation.run(act2, "h1").outcome == "agent_fence_ahead"
    assert world.host("h1").fence == 2


def test_clearing_an_agent_hold_needs_the_agent_restored_and_pushes_the_product_fence(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.highest_fence["h1"] = 2**63 - 1
    assert world.activation.run(act_id, "h1").outcome == "agent_fence_ahead"
    holds = world.container.agent_holds
    with pytest.raises(Conflict, match="still claims fence 9223372036854775807"):
        holds.clear("h1", "alice")
    assert world.host("h1").agent_hold == "agent_fence_ahead"
    del world.agents.highest_fence["h1"]  # the admin restored the agent's state (a new one)
    answer = holds.clear("h1", "alice")
    assert (answer["fence"], answer["agent_highest"]) == (1, 1)
    assert world.agents.fence_calls[-1] == ("h1", 1)
    assert world.host("h1").agent_hold is None
    assert world.audit(event="agent_hold_cleared")[0]["actor"] == "alice"
    with pytest.raises(Conflict, match="not held"):
        holds.clear("h1", "alice")
    world.clock.advance(TICK.tick_interval_s)
    world.healthy("h1")
    assert world.activation.run(world.queue("h1", "act-2"), "h1").outcome == "up"
    assert world.agents.init_calls[-1][1] == 2


def test_a_report_ahead_of_the_product_holds_the_host_before_any_init(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.reports["h1"] = replace(world.agents.reports["h1"], agent=AgentState("state-a", 2**63 - 1))
    assert world.activation.run(act_id, "h1").outcome == "agent_fence_ahead"
    assert world.agents.init_calls == world.agents.fence_calls == []
    assert world.host("h1").agent_hold == "agent_fence_ahead"


def test_a_new_agent_state_is_told_the_product_fence_before_the_init(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    act_id = queued_out_host(world)
    world.agents.reports["h1"] = replace(world.agents.reports["h1"], agent=AgentState("state-a", 0))
    read_counter: list[str] = []
    issued_fence = world.repos.hosts.issued_fence

    def counted(conn: object, host_id: str) -> int | None:
        read_counter.append(host_id)
        return issued_fence(conn, host_id)

    monkeypatch.setattr(world.repos.hosts, "issued_fence", counted)
    assert world.activation.run(act_id, "h1").outcome == "up"
    assert world.agents.fence_calls == [("h1", 1)]
    # Neither the report's claim (0) nor the pushed fence's answer (1) is above the fence this
    # activation was issued: the product's counter is not read for them.
    assert read_counter == []
    assert world.host("h1").agent_state_id == "state-a"
    [pushed] = world.audit(event="agent_fence_pushed")
    assert pushed["reason"] == "agent_state_new"
    # Same state, not behind: no push. A new state (its file lost): pushed again, before the init.
    for state, pushes in (("state-a", 1), ("state-b", 2)):
        world.set_status("h1", S.NON_OPERATIONAL, "kvm_not_running")
        world.clock.advance(TICK.tick_interval_s)
        world.healthy("h1")
        world.agents.reports["h1"] = replace(
            world.agents.reports["h1"], agent=AgentState(state, 0 if state == "state-b" else 2)
        )
        act = world.queue("h1", f"act-{state}")
        assert world.activation.run(act, "h1").outcome == "up"
        assert len(world.agents.fence_calls) == pushes


def test_a_stale_holder_refused_by_the_agent_writes_nothing(world: World) -> None:
    act_id = queued_out_host(world)
    original = world.agents.init

    def reaped_then_refused(target: Target, fence: int, activation_id: str) -> InitResult:
        # The holder paused so long that the reaper abandoned it and a newer holder got in.
        world.reap_as_if_later(100)
        world.agents.highest_fence[target.host_id] = fence + 1
        return original(target, fence, activation_id)

    world.agents.init = reaped_then_refused  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    before = world.events("h1")
    assert out.outcome == "stale_fence"
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence) == (S.NON_OPERATIONAL, "activation_failed", 2)
    assert world.act(act_id).state == "abandoned"
    assert world.events("h1") == before


def test_a_fence_superseded_during_init_writes_nothing(world: World) -> None:
    act_id = queued_out_host(world)
    original = world.agents.init

    def init_then_reaped(target: Target, fence: int, activation_id: str) -> InitResult:
        result = original(target, fence, activation_id)
        # Meanwhile the holder paused so long that the reaper abandoned its activation.
        world.reap_as_if_later(100)
        return result

    world.agents.init = init_then_reaped  # type: ignore[method-assign]
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.fence) == ("stale_fence", 1)
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.fence) == (S.NON_OPERATIONAL, "activation_failed", 2)
    assert world.act(act_id).state == "abandoned"
    assert world.audit(event="activation_succeeded") == []
    assert world.events("h1")[-1] == "activation_abandoned"


def test_a_fence_superseded_before_init_writes_nothing_and_calls_no_agent(world: World) -> None:
    act_id = queued_out_host(world)
    original = world.agents.get_report

    def report_then_reaped(target: Target, now: datetime) -> Report:
        world.reap_as_if_later(100)
        return original(target, now)

    world.agents.get_report = report_then_reaped  # type: ignore[method-assign]
    assert world.activation.run(act_id, "h1").outcome == "stale_fence"
    assert world.agents.init_calls == []
    assert world.host("h1").status is S.NON_OPERATIONAL
    assert holder_token(world.redis, keys.host_lock("h1")) is None


def test_a_host_already_up_is_a_no_op(world: World) -> None:
    act_id = queued_out_host(world)
    world.set_status("h1", S.UP)
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "already_up"
    assert world.agents.init_calls == []
    assert world.host("h1").status is S.UP
    assert world.act(act_id).state == "skipped"


def test_running_a_closed_or_unknown_activation_is_a_duplicate(world: World) -> None:
    act_id = queued_out_host(world)
    assert world.activation.run(act_id, "h1").outcome == "up"
    before = copy.deepcopy(world.db.state)
    again = world.activation.run(act_id, "h1")
    assert again.outcome == "duplicate"
    assert world.activation.run("no-such-activation", "h1").outcome == "duplicate"
    assert world.db.state == before
    assert len(world.agents.init_calls) == 1


def test_a_retried_activation_gets_a_new_fence_and_finishes(world: World) -> None:
    act_id = queued_out_host(world)
    with world.db.transaction() as conn:  # a first attempt began, then its worker died
        world.repos.activations.begin(conn, act_id, world.clock())
    out = world.activation.run(act_id, "h1")
    assert (out.outcome, out.fence) == ("up", 2)


def test_give_up_returns_an_initializing_host_to_non_operational(world: World) -> None:
    act_id = queued_out_host(world)
    with world.db.transaction() as conn:
        fence = world.repos.activations.begin(conn, act_id, world.clock())
        world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    world.activation.give_up(act_id, "h1", "retries exhausted: redis down")
    act = world.act(act_id)
    assert (act.state, act.outcome) == ("abandoned", "gave_up")
    h1 = world.host("h1")
    assert (h1.status, h1.reason, h1.detail) == (
        S.NON_OPERATIONAL,
        "activation_failed",
        "activation gave up: retries exhausted: redis down",
    )
    assert world.audit(event="activation_abandoned")[0]["reason"] == "gave_up"
    before = copy.deepcopy(world.db.state)
    world.activation.give_up(act_id, "h1", "again")
    assert world.db.state == before


def test_the_host_view_lists_each_step_of_an_activation_with_its_task_id(world: World) -> None:
    act_id = queued_out_host(world)
    world.agents.reports["h1"] = replace(world.agents.reports["h1"], protocol=2)
    sent = world.activation.run(act_id, "h1", act_id)
    assert sent.outcome == "sent"  # v2: answered at once
    assert world.activation.check(act_id, "h1", sent.next_check_id).outcome == "up"
    [shown] = world.views.describe("h1")["recent_activations"]
    assert (shown["id"], shown["state"]) == (act_id, "done")
    assert [(s["step"], s["task_id"], s["outcome"]) for s in shown["steps"]] == [
        ("send", act_id, "sent"),
        ("check", sent.next_check_id, "up"),
    ]
