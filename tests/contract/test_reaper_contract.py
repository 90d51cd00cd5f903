"""Contract of the housekeeping SQL: leases on the database's clock, re-sends, fence marks, CHECKs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from autorecovery.ports.rows import FencePush
from models.domain import RunningInit
from tests.contract.conftest import Backend
from tests.contract.helpers import at, audit, backdate, host, is_db_now, queue, report, seed, tx

SKEW = timedelta(minutes=10)


def pending(backend: Backend) -> list[FencePush]:
    with tx(backend) as conn:
        return list(backend.repos.hosts.pending_fences(conn, 100))


# --- defect 4: leases ---------------------------------------------------------------------------


def test_leases_are_the_databases_clock_whatever_the_callers_clock(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    behind = datetime.now(UTC) - SKEW
    queue(backend, [("q", "h1"), ("r", "h2")], now=behind)  # an API machine minutes behind
    with tx(backend) as conn:
        assert backend.repos.activations.begin(conn, "r", behind) == 1  # a worker minutes behind
        q, r = backend.repos.activations.get(conn, "q"), backend.repos.activations.get(conn, "r")
    assert is_db_now(q.queued_at) and is_db_now(r.started_at)
    with tx(backend) as conn:  # a tick minutes ahead: nothing it reaps is stale on the database
        assert (
            backend.repos.activations.reap(
                conn, now=datetime.now(UTC) + SKEW, queued_ttl_s=60, running_ttl_s=60
            )
            == []
        )


def test_storage_domain_leases_are_the_databases_clock(backend: Backend) -> None:
    with tx(backend) as conn:
        backend.repos.storage.ensure(conn, ["sd-1"], at(0))
        behind = datetime.now(UTC) - SKEW
        backend.repos.storage.queue_activation(conn, "x1", "sd-1", trigger="auto", actor="auto", now=behind)
        assert (
            backend.repos.storage.reap_activations(
                conn, now=datetime.now(UTC) + SKEW, queued_ttl_s=60, running_ttl_s=60
            )
            == 0
        )
        assert is_db_now(backend.repos.storage.get_activation(conn, "x1")["queued_at"])


# --- defect 13: re-sends ------------------------------------------------------------------------


def resend(backend: Backend, max_resends: int = 2) -> list[tuple[str, int]]:
    with tx(backend) as conn:
        rows = backend.repos.activations.resend_queued(conn, now=at(9), after_s=20, max_resends=max_resends)
    return [(r["id"], r["sends"]) for r in rows]


def test_resend_queued_counts_sends_and_stops_at_the_bound(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    queue(backend, [("a1", "h1"), ("a2", "h2")], trigger="manual", actor="alice")
    assert resend(backend) == []  # just queued
    backdate(backend, "activations", "a1", 30)
    backdate(backend, "activations", "a2", 30)
    with tx(backend) as conn:
        backend.repos.activations.begin(conn, "a2", at(1))  # a worker got it: not lost
        [row] = backend.repos.activations.resend_queued(conn, now=at(9), after_s=20, max_resends=2)
    assert {k: row[k] for k in ("id", "host_id", "trigger", "actor", "sends")} == {
        "id": "a1",
        "host_id": "h1",
        "trigger": "manual",
        "actor": "alice",
        "sends": 2,
    }
    assert resend(backend) == []  # counted from the last send
    backdate(backend, "activations", "a1", 30)
    assert resend(backend) == [("a1", 3)]
    backdate(backend, "activations", "a1", 30)
    assert resend(backend) == []  # two re-sends at most
    assert resend(backend, max_resends=3) == [("a1", 4)]
    entries = audit(backend, event="activation_resent")
    assert [(e["object_id"], e["actor"], e["reason"], e["at"]) for e in entries] == [
        ("h1", "auto", "not_started_in_time", at(9))
    ] * 3
    assert sorted(e["details"]["sends"] for e in entries) == [2, 3, 4]
    assert all(e["details"]["activation_id"] == "a1" for e in entries)


# --- issue 9: fences the agents must learn ------------------------------------------------------


def test_every_takeover_marks_the_fence_for_the_agent(backend: Backend) -> None:
    seed(backend, "reaped", "given-up", "orphan", "untouched", "never-began")
    queue(backend, [("a1", "reaped"), ("a2", "given-up"), ("a3", "untouched"), ("a4", "never-began")])
    with tx(backend) as conn:
        for act_id in ("a1", "a2", "a3"):
            assert backend.repos.activations.begin(conn, act_id, at(1)) == 1
        backend.repos.hosts.set_status(conn, "orphan", "initializing", None, "x", at(0))
    assert pending(backend) == []  # beginning an activation is no takeover
    backdate(backend, "activations", "a1", 100)
    backdate(backend, "activations", "a4", 100)  # reaped too, but no holder had a fence
    with tx(backend) as conn:
        assert len(backend.repos.activations.reap(conn, now=at(5), queued_ttl_s=60, running_ttl_s=60)) == 2
        assert backend.repos.hosts.raise_fence(conn, "given-up", 1, 2)  # give_up does this
        assert backend.repos.activations.reset_orphans(conn, now=at(5), before=at(1)) == ["orphan"]
    assert pending(backend) == [
        FencePush("given-up", "http://given-up", 2),
        FencePush("orphan", "http://orphan", 1),
        FencePush("reaped", "http://reaped", 2),
    ]
    with tx(backend) as conn:
        assert [p.host_id for p in backend.repos.hosts.pending_fences(conn, 2)] == ["given-up", "orphan"]


def test_clear_fence_pending_only_for_the_fence_the_agent_learnt(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    with tx(backend) as conn:
        backend.repos.hosts.raise_fence(conn, "h1", 0, 3)
        backend.repos.hosts.raise_fence(conn, "h2", 0, 3)
    told = pending(backend)
    with tx(backend) as conn:
        backend.repos.hosts.raise_fence(conn, "h2", 3, 4)  # moved on while the agent was told 3
        assert backend.repos.hosts.clear_fence_pending(conn, told) == 1
        assert backend.repos.hosts.clear_fence_pending(conn, []) == 0
    assert pending(backend) == [FencePush("h2", "http://h2", 4)]
    assert host(backend, "h2").fence == 4


# --- issue 14: housekeeping in a task of its own --------------------------------------------------


def test_an_agent_that_failed_waits_its_backoff_while_the_others_get_their_turn(backend: Backend) -> None:
    seed(backend, "dead", "live")
    with tx(backend) as conn:
        backend.repos.hosts.raise_fence(conn, "dead", 0, 1)
        backend.repos.hosts.raise_fence(conn, "live", 0, 1)
        assert [p.host_id for p in backend.repos.hosts.pending_fences(conn, 1)] == ["dead"]
        assert backend.repos.hosts.fence_push_failed(conn, ["dead"], 60.0, 300.0) == 1
    assert [p.host_id for p in pending(backend)] == ["live"]  # the dead one waits a minute
    with tx(backend) as conn:
        backend.repos.hosts.clear_fence_pending(conn, [FencePush("live", "http://live", 1)])
        assert backend.repos.hosts.fence_push_failed(conn, ["live"], 60.0, 300.0) == 0  # told already
    assert pending(backend) == []


def test_one_housekeeping_run_at_a_time(backend: Backend) -> None:
    with tx(backend) as conn:
        assert backend.repos.ticks.claim_housekeeping(conn, "run-1", 60.0)
        assert not backend.repos.ticks.claim_housekeeping(conn, "run-2", 60.0)
        assert not backend.repos.ticks.release_housekeeping(conn, "run-2")
        assert backend.repos.ticks.release_housekeeping(conn, "run-1")
        assert backend.repos.ticks.claim_housekeeping(conn, "run-2", 0.0)  # a lease that runs out
        assert backend.repos.ticks.claim_housekeeping(conn, "run-3", 60.0)


# --- defect 8: CHECK constraints ----------------------------------------------------------------


def test_a_misspelt_host_status_is_refused(backend: Backend) -> None:
    seed(backend, "h1")
    with pytest.raises(psycopg.errors.CheckViolation), tx(backend) as conn:
        backend.repos.hosts.set_status(conn, "h1", "non_operatonal", "general", "typo", at(1))
    with tx(backend) as conn:  # registration's new status for hosts never heard from
        assert backend.repos.hosts.set_status(conn, "h1", "unassigned", None, "never reported", at(1))


def test_a_misspelt_activation_state_or_trigger_is_refused(backend: Backend) -> None:
    seed(backend, "h1")
    queue(backend, [("a1", "h1")])
    with pytest.raises(psycopg.errors.CheckViolation), tx(backend) as conn:
        backend.repos.activations.finish(
            conn, "a1", state="succeded", outcome="up", reason=None, detail=None, now=at(1), fence=None
        )
    with tx(backend) as conn:
        assert backend.repos.activations.in_flight(conn, "h1") is not None  # still one in flight
    with pytest.raises(psycopg.errors.CheckViolation), tx(backend) as conn:
        backend.repos.activations.create_many(
            conn,
            [("a2", "h1")],
            trigger="Auto",
            actor="x",
            now=at(1),
            statuses=["non_operational"],
            reason="typo",
        )


def test_a_misspelt_storage_domain_status_or_activation_state_is_refused(backend: Backend) -> None:
    with tx(backend) as conn:
        backend.repos.storage.ensure(conn, ["sd-1"], at(0))
        backend.repos.storage.queue_activation(conn, "x1", "sd-1", trigger="auto", actor="auto", now=at(0))
    with pytest.raises(psycopg.errors.CheckViolation), tx(backend) as conn:
        backend.repos.storage.set_status(conn, "sd-1", "actve", "typo", at(1))
    with pytest.raises(psycopg.errors.CheckViolation), tx(backend) as conn:
        backend.repos.storage.finish_activation(
            conn, "x1", state="faild", outcome="x", detail="typo", now=at(1), fence=None
        )
    with pytest.raises(psycopg.errors.CheckViolation), tx(backend) as conn:
        backend.repos.storage.queue_activation(conn, "x2", "sd-1", trigger="robot", actor="x", now=at(1))


# --- issue 9: the init a v2 report shows, and the activation that tracks it ---------------------


def test_a_reports_running_init_is_stored_and_the_tracking_activation_named(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    running = RunningInit("a-x", 7, at(-40))
    with tx(backend) as conn:
        backend.repos.hosts.upsert_reports(
            conn, [replace(report("h1", at(1)), protocol=2, init=running), report("h2", at(1))], at(2)
        )
    queue(backend, [("a1", "h1")])
    with tx(backend) as conn:
        _, h1_report, h1_row = backend.repos.hosts.get_host(conn, "h1")
        _, h2_report, h2_row = backend.repos.hosts.get_host(conn, "h2")
    assert h1_report.init == running and h2_report.init is None
    assert (h1_row["in_flight_id"], h2_row["in_flight_id"]) == ("a1", None)


# --- review: a reaped init that may still run holds its host -------------------------------------


def test_a_reaped_sending_activation_of_an_initializing_host_holds_it(backend: Backend) -> None:
    seed(backend, "sent-init", "not-yet", "queued")
    queue(backend, [("a1", "sent-init"), ("a2", "not-yet"), ("a3", "queued")])
    with tx(backend) as conn:
        for act_id in ("a1", "a2"):
            assert backend.repos.activations.begin(conn, act_id, at(1)) == 1
        # a1's holder set initializing (and sent its init) before its worker was lost.
        assert backend.repos.hosts.set_status(conn, "sent-init", "initializing", None, "x", at(1), fence=1)
        backend.repos.hosts.set_status(conn, "queued", "initializing", None, "x", at(1))
    for act_id in ("a1", "a2", "a3"):
        backdate(backend, "activations", act_id, 100)
    with tx(backend) as conn:
        reaped = backend.repos.activations.reap(
            conn, now=at(5), queued_ttl_s=60, running_ttl_s=60, init_hold_s=120
        )
    assert sorted(r["was"] for r in reaped) == ["queued", "sending", "sending"]
    assert host(backend, "sent-init").init_hold_until == at(125)
    assert host(backend, "sent-init").status.value == "non_operational"
    assert host(backend, "not-yet").init_hold_until is None  # never initializing: nothing sent
    assert host(backend, "queued").init_hold_until is None  # never began: nothing sent
    held = audit(backend, event="init_held")
    assert [(e["object_id"], e["actor"], e["details"]["activation_id"]) for e in held] == [
        ("sent-init", "auto", "a1")
    ]


def test_an_activation_the_broker_refused_is_no_flap_and_keeps_its_actor(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    queue(backend, [("a1", "h1")])  # the tick's
    queue(backend, [("a2", "h2")], trigger="manual", actor="alice")  # an admin's
    with tx(backend) as conn:
        backend.repos.activations.mark_enqueue_failed(conn, [("a1", "h1"), ("a2", "h2")], at(2), "down")
        assert backend.repos.safety.auto_ends_since(conn, "h1", at(-3600)) == 0
    entries = audit(backend, event="activation_not_enqueued")
    assert sorted((e["object_id"], e["actor"]) for e in entries) == [("h1", "auto"), ("h2", "alice")]


# --- issue 14: a lost check step ----------------------------------------------------------------


def test_resend_checks_gives_a_sent_activation_with_no_recent_step_a_new_token(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    queue(backend, [("a1", "h1"), ("a2", "h2")], trigger="manual", actor="alice")
    with tx(backend) as conn:
        for act in ("a1", "a2"):
            fence = backend.repos.activations.begin(conn, act, at(1))
            assert backend.repos.activations.mark_sent(
                conn, act, fence=fence, answer="running", protocol=2, hold_s=120
            )
        backend.repos.activations.add_step(conn, "a1", "send", "a1", "sent", next_check="c1")
        assert backend.repos.activations.get(conn, "a1").check_task_id == "c1"
        assert backend.repos.activations.resend_checks(conn, now=at(9), after_s=20) == []  # just sent
    backdate(backend, "activations", "a1", 30)  # a1's step is recent: its check is not lost
    backdate(backend, "activations", "a2", 30)  # a2 has no step since it began 30 s ago
    with tx(backend) as conn:
        [row] = backend.repos.activations.resend_checks(conn, now=at(9), after_s=20)
        a2 = backend.repos.activations.get(conn, "a2")
        steps = backend.repos.activations.steps(conn, ["a2"])
    assert {k: row[k] for k in ("id", "host_id", "trigger", "actor", "sends")} == {
        "id": "a2", "host_id": "h2", "trigger": "manual", "actor": "alice", "sends": 2,
    }
    assert row["check_task_id"] and a2.check_task_id == row["check_task_id"]
    assert [(s.step, s.task_id, s.outcome) for s in steps] == [
        ("check", row["check_task_id"], "resent: no step for a while")
    ]
    with tx(backend) as conn:  # the re-send is a step: not again until after_s has passed
        assert backend.repos.activations.resend_checks(conn, now=at(9), after_s=20) == []
        # A closed record takes no token.
        backend.repos.activations.add_step(conn, "a2", "check", "x", "up", next_check="c9")
    [entry] = audit(backend, event="activation_check_resent")
    assert (entry["object_id"], entry["reason"], entry["details"]["activation_id"]) == (
        "h2", "no_step_in_time", "a2"
    )
