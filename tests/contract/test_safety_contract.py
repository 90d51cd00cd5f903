"""The safety repository (pauses, observer, admission counts, holds, incidents) on both backends.

Every assertion here must hold on the in-memory fake and on PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
import pytest

from models.domain import Cluster, HostStatus, Report
from models.policy import Transition
from models.safety import FLEET, Pause
from tests.contract.conftest import Backend
from tests.contract.helpers import T0, at, audit, host, host_row, queue, seed, tx

NON_OP = HostStatus.NON_OPERATIONAL
OBSERVER_KEYS = {"id", "last_full_tick_at", "gate", "silent_hosts", "observed_hosts", "updated_at"}
INCIDENT_KEYS = {"id", "cluster_id", "reason", "subject", "hosts", "opened_at", "closed_at"}
CHANGE_KEYS = {"event", "id", "cluster_id", "reason", "subject", "hosts"}


def pause(scope: str, expires: float | None = None, reason: str = "upgrade", owner: str = "alice") -> Pause:
    return Pause(scope, reason, owner, T0, at(expires) if expires is not None else None)


def finish(backend: Backend, activation_id: str, state: str, ended: float) -> None:
    with tx(backend) as conn:
        assert backend.repos.activations.finish(
            conn,
            activation_id,
            state=state,
            outcome=state,
            reason=None,
            detail=None,
            now=at(ended),
            fence=None,
        )


def go_out(
    backend: Backend, when: float, subject: str, *host_ids: str, reason: str = "storage_domain_unreachable"
) -> None:
    """Send up hosts out, non_operational for ``subject``, at ``when``."""
    changes = [
        Transition(h, HostStatus.UP, NON_OP, reason, f"storage domain {subject} unreachable", subject)
        for h in host_ids
    ]
    with tx(backend) as conn:
        assert sorted(backend.repos.hosts.apply_transitions(conn, changes, at(when), "auto")) == sorted(
            host_ids
        )


def set_up(backend: Backend, *host_ids: str) -> None:
    with tx(backend) as conn:
        for h in host_ids:
            assert backend.repos.hosts.set_status(conn, h, "up", None, "ok", T0)


def track(backend: Backend, now: float, since: float, min_hosts: int = 3) -> list[dict[str, Any]]:
    with tx(backend) as conn:
        return list(
            backend.repos.safety.track_incidents(conn, now=at(now), since=at(since), min_hosts=min_hosts)
        )


def open_incidents(backend: Backend) -> list[dict[str, Any]]:
    with tx(backend) as conn:
        return list(backend.repos.safety.open_incidents(conn))


# --- host columns -------------------------------------------------------------------------------


def test_a_new_host_has_no_holds_and_no_subject(backend: Backend) -> None:
    seed(backend, "h1", status=None)
    h1 = host(backend, "h1")
    assert (h1.failures, h1.next_attempt_at, h1.quarantined_at) == (0, None, None)
    row = host_row(backend, "h1")
    assert (row["quarantine_reason"], row["subject"]) == (None, None)


def test_apply_transitions_writes_the_subject(backend: Backend) -> None:
    seed(backend, "h1", "h2", status="up")
    go_out(backend, 5, "sd-1", "h1")
    assert host_row(backend, "h1")["subject"] == "sd-1"
    with tx(backend) as conn:  # a reason with no subject clears it
        backend.repos.hosts.apply_transitions(
            conn, [Transition("h1", NON_OP, HostStatus.NON_RESPONSIVE, "no_report", "x")], at(6), "auto"
        )
    assert host_row(backend, "h1")["subject"] is None
    assert host_row(backend, "h2")["subject"] is None


# --- pauses -------------------------------------------------------------------------------------


def test_set_list_and_lift_pauses(backend: Backend) -> None:
    seed(backend)
    with tx(backend) as conn:
        assert backend.repos.safety.list_pauses(conn) == {}
        backend.repos.safety.set_pause(conn, pause("c1", 600))
        backend.repos.safety.set_pause(conn, pause(FLEET))
    with tx(backend) as conn:
        stored = backend.repos.safety.list_pauses(conn)
    assert stored == {"c1": pause("c1", 600), FLEET: pause(FLEET)}
    assert list(stored) == ["c1", FLEET]  # ordered by scope
    replaced = Pause(FLEET, "storm", "bob", at(1), at(900))
    with tx(backend) as conn:
        backend.repos.safety.set_pause(conn, replaced)
        assert backend.repos.safety.list_pauses(conn)[FLEET] == replaced
        assert backend.repos.safety.lift_pause(conn, FLEET) == replaced
        assert backend.repos.safety.lift_pause(conn, FLEET) is None
        assert backend.repos.safety.lift_pause(conn, "nope") is None
    with tx(backend) as conn:
        assert backend.repos.safety.list_pauses(conn) == {"c1": pause("c1", 600)}
    assert audit(backend) == []  # the service audits pauses, not the repository


def test_active_pauses_drops_expired_ones_and_audits_each(backend: Backend) -> None:
    with tx(backend) as conn:
        backend.repos.safety.set_pause(conn, pause(FLEET, 60, reason="storm"))
        backend.repos.safety.set_pause(conn, pause("c1", 120))
        backend.repos.safety.set_pause(conn, pause("c2", 30, owner="bob"))
        backend.repos.safety.set_pause(conn, pause("c3"))
    with tx(backend) as conn:
        assert backend.repos.safety.active_pauses(conn, at(29)) == {
            "c1": pause("c1", 120),
            "c2": pause("c2", 30, owner="bob"),
            "c3": pause("c3"),
            FLEET: pause(FLEET, 60, reason="storm"),
        }
    assert audit(backend) == []
    with tx(backend) as conn:  # an expiry equal to now has ended
        active = backend.repos.safety.active_pauses(conn, at(60))
    assert active == {"c1": pause("c1", 120), "c3": pause("c3")}
    entries = audit(backend, event="pause_expired")
    assert sorted(
        (e["object_type"], e["object_id"], e["actor"], e["reason"], e["at"], e["details"]["owner"])
        for e in entries
    ) == [
        ("pause", "c2", "auto", "upgrade", at(60), "bob"),
        ("pause", FLEET, "auto", "storm", at(60), "alice"),
    ]
    expiries = {e["object_id"]: datetime.fromisoformat(e["details"]["expires_at"]) for e in entries}
    assert expiries == {"c2": at(30), FLEET: at(60)}
    with tx(backend) as conn:  # gone for good: listed no more, audited once
        assert backend.repos.safety.list_pauses(conn) == active
        assert backend.repos.safety.active_pauses(conn, at(61)) == active
    assert len(audit(backend, event="pause_expired")) == 2


def test_a_pause_with_unstorable_text_fails_the_statement(backend: Backend) -> None:
    with pytest.raises(psycopg.DataError), tx(backend) as conn:
        backend.repos.safety.set_pause(conn, pause(FLEET, reason="storm\x00"))
    with tx(backend) as conn:
        assert backend.repos.safety.list_pauses(conn) == {}


# --- holds, whatever the status --------------------------------------------------------------


def test_held_hosts_counts_every_hold_up_hosts_included(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3", "h4", "h5")
    set_up(backend, "h1", "h2")
    with tx(backend) as conn:
        assert backend.repos.safety.quarantine(conn, "h1", at(5), "flapping: 5 in 1 h")  # up, quarantined
        assert backend.repos.safety.quarantine(conn, "h3", at(5), "flapping")
        assert backend.repos.hosts.set_autorecovery(conn, "h2", False)
        assert backend.repos.safety.record_failure(conn, "h4", 0, at(100)) == 1
        assert backend.repos.safety.record_failure(conn, "h5", 0, at(100)) == 1
    with tx(backend) as conn:
        held = backend.repos.safety.held_hosts(conn, at(10), 1)
    assert held == [
        {"hold": "autorecovery_off", "status": "up", "n": 1, "examples": ["h2"]},
        {"hold": "backoff", "status": "non_operational", "n": 2, "examples": ["h4"]},
        {"hold": "quarantine", "status": "non_operational", "n": 1, "examples": ["h3"]},
        {"hold": "quarantine", "status": "up", "n": 1, "examples": ["h1"]},
    ]
    with tx(backend) as conn:  # the backoff ended
        later = backend.repos.safety.held_hosts(conn, at(100), 5)
    assert [r["hold"] for r in later] == ["autorecovery_off", "quarantine", "quarantine"]


def test_held_hosts_counts_an_agent_that_cannot_save_its_state_up_or_not(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3")
    set_up(backend, "h1")
    full = "cannot save the agent's state: No space left on device"
    reports = [
        Report("h1", at(-1), state_unwritable=full),
        Report("h2", at(-1), state_unwritable=full),
        Report("h3", at(-1)),
    ]
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_reports(conn, reports, at(0)) == 3
        held = backend.repos.safety.held_hosts(conn, at(1), 5)
    assert held == [
        {"hold": "agent_state_unwritable", "status": "non_operational", "n": 1, "examples": ["h2"]},
        {"hold": "agent_state_unwritable", "status": "up", "n": 1, "examples": ["h1"]},
    ]


# --- observer -----------------------------------------------------------------------------------


def test_observer_starts_empty_and_records_each_full_tick(backend: Backend) -> None:
    with tx(backend) as conn:
        first = backend.repos.safety.observer_state(conn)
    assert first == {
        "id": 1,
        "last_full_tick_at": None,
        "gate": None,
        "silent_hosts": 0,
        "observed_hosts": 0,
        "updated_at": None,
    }
    with tx(backend) as conn:
        backend.repos.safety.record_observer(conn, now=at(10), gate="quiet_period: x", silent=3, observed=7)
    with tx(backend) as conn:
        state = backend.repos.safety.observer_state(conn)
    assert set(state) == OBSERVER_KEYS
    assert (state["last_full_tick_at"], state["gate"], state["silent_hosts"], state["observed_hosts"]) == (
        at(10),
        "quiet_period: x",
        3,
        7,
    )
    assert state["updated_at"] == at(10)
    with tx(backend) as conn:
        backend.repos.safety.record_observer(conn, now=at(20), gate=None, silent=0, observed=8)
        state = backend.repos.safety.observer_state(conn)
        state["gate"] = "changed by the caller"  # a copy: the store is not touched
        assert backend.repos.safety.observer_state(conn)["gate"] is None
    with tx(backend) as conn:
        again = backend.repos.safety.observer_state(conn)
    assert (again["last_full_tick_at"], again["gate"], again["observed_hosts"]) == (at(20), None, 8)


# --- admission counts ---------------------------------------------------------------------------


def test_lock_admission_can_be_taken_in_any_transaction(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        backend.repos.safety.lock_admission(conn)
        backend.repos.safety.lock_admission(conn)  # re-entrant within its transaction
        assert backend.repos.safety.in_flight_by_cluster(conn) == {}
    with tx(backend) as conn:  # released at the end of the transaction
        backend.repos.safety.lock_admission(conn)


def test_in_flight_by_cluster_counts_queued_and_running(backend: Backend) -> None:
    seed(backend, "a1", "a2", "a3", "a4")
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c2"))
        backend.repos.hosts.upsert_cluster(conn, Cluster("c3"))
        for h in ("b1", "b2"):
            backend.repos.hosts.insert_host(conn, h, "c2", f"http://{h}", T0)
            backend.repos.hosts.set_status(conn, h, "non_operational", "general", "x", T0)
        assert backend.repos.safety.in_flight_by_cluster(conn) == {}
    queue(backend, [("x1", "a1"), ("x2", "a2"), ("x3", "a3"), ("y1", "b1")])
    with tx(backend) as conn:
        backend.repos.activations.begin(conn, "x2", at(1))
    finish(backend, "x3", "done", 2)
    with tx(backend) as conn:
        assert backend.repos.safety.in_flight_by_cluster(conn) == {"c1": 2, "c2": 1}
        assert backend.repos.safety.cluster_sizes(conn) == {"c1": 4, "c2": 2}  # c3 has no host
        assert backend.repos.safety.queued_activations(conn) == 2  # x1, y1: not started yet


# --- backoff and quarantine ---------------------------------------------------------------------


def test_record_failure_is_fenced_and_counts_up(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        assert backend.repos.safety.failures_of(conn, "h1") == 0
        assert backend.repos.safety.failures_of(conn, "ghost") == 0
        assert backend.repos.safety.record_failure(conn, "h1", 0, at(10)) == 1
        assert backend.repos.safety.record_failure(conn, "h1", 0, at(30)) == 2
        assert backend.repos.safety.record_failure(conn, "h1", 7, at(99)) is None  # fence moved on
        assert backend.repos.safety.record_failure(conn, "ghost", 0, at(99)) is None
        assert backend.repos.safety.failures_of(conn, "h1") == 2
    h1 = host(backend, "h1")
    assert (h1.failures, h1.next_attempt_at) == (2, at(30))


def test_clear_holds_returns_what_was_set(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        backend.repos.safety.record_failure(conn, "h1", 0, at(40))
        assert backend.repos.safety.quarantine(conn, "h1", at(5), "flapping: 5 in 1h")
    with tx(backend) as conn:
        was = backend.repos.safety.clear_holds(conn, "h1", quarantine=False)
    assert dict(was) == {
        "failures": 1,
        "next_attempt_at": at(40),
        "quarantined_at": at(5),
        "quarantine_reason": "flapping: 5 in 1h",
    }
    h1 = host(backend, "h1")
    assert (h1.failures, h1.next_attempt_at, h1.quarantined_at) == (0, None, at(5))  # backoff only
    with tx(backend) as conn:
        was = backend.repos.safety.clear_holds(conn, "h1", quarantine=True, now=at(50))
        assert backend.repos.safety.clear_holds(conn, "ghost", quarantine=True, now=at(50)) is None
    assert dict(was) == {
        "failures": 0,
        "next_attempt_at": None,
        "quarantined_at": at(5),
        "quarantine_reason": "flapping: 5 in 1h",
    }
    h1 = host(backend, "h1")
    assert (h1.failures, h1.next_attempt_at, h1.quarantined_at) == (0, None, None)
    assert host_row(backend, "h1")["quarantine_reason"] is None


def test_quarantine_only_once(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        assert backend.repos.safety.quarantine(conn, "h1", at(1), "first") is True
        assert backend.repos.safety.quarantine(conn, "h1", at(2), "second") is False
        assert backend.repos.safety.quarantine(conn, "ghost", at(2), "x") is False
    assert host(backend, "h1").quarantined_at == at(1)
    assert host_row(backend, "h1")["quarantine_reason"] == "first"


def test_auto_ends_since_counts_automatic_recoveries_and_failures(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    for i, (trigger, state, ended) in enumerate(
        [
            ("auto", "done", 15),  # the first up ever (after registration): no recovery
            ("auto", "done", 10),
            ("auto", "failed", 20),
            ("auto", "failed", 5),  # before the window
            ("auto", "skipped", 30),  # never reached the agent
            ("auto", "abandoned", 30),
            ("manual", "done", 30),  # an admin's
        ]
    ):
        queue(backend, [(f"a{i}", "h1")], now=at(i), trigger=trigger, actor=trigger)
        finish(backend, f"a{i}", state, ended)
    queue(backend, [("other", "h2")])
    finish(backend, "other", "failed", 20)
    queue(backend, [("open", "h1")], now=at(40))  # still in flight
    with tx(backend) as conn:
        assert backend.repos.safety.auto_ends_since(conn, "h1", at(10)) == 2  # the bound counts
        assert backend.repos.safety.auto_ends_since(conn, "h1", at(0)) == 3
        assert backend.repos.safety.auto_ends_since(conn, "h1", at(21)) == 0
        assert backend.repos.safety.auto_ends_since(conn, "ghost", at(0)) == 0


def test_clearing_the_quarantine_restarts_the_flap_count(backend: Backend) -> None:
    seed(backend, "h1")
    queue(backend, [("first-up", "h1")], now=at(0))
    finish(backend, "first-up", "done", 1)
    for i in range(3):
        queue(backend, [(f"a{i}", "h1")], now=at(i * 10))
        finish(backend, f"a{i}", "failed", i * 10 + 5)  # ended at 5, 15, 25
    with tx(backend) as conn:
        backend.repos.safety.quarantine(conn, "h1", at(25), "flapping")
        backend.repos.safety.clear_holds(conn, "h1", quarantine=False)  # backoff only: count kept
        assert backend.repos.safety.auto_ends_since(conn, "h1", at(0)) == 3
        backend.repos.safety.clear_holds(conn, "h1", quarantine=True, now=at(15))
        assert backend.repos.safety.auto_ends_since(conn, "h1", at(0)) == 1  # only after at(15)
    queue(backend, [("a3", "h1")], now=at(30))
    finish(backend, "a3", "done", 35)
    with tx(backend) as conn:
        assert backend.repos.safety.auto_ends_since(conn, "h1", at(0)) == 2


# --- incidents ----------------------------------------------------------------------------------


def test_many_hosts_out_for_one_subject_open_one_incident(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3", "h4", "h5", status="up")
    go_out(backend, 100, "sd-1", "h1", "h2")
    assert track(backend, now=110, since=50) == []  # two are not an incident
    go_out(backend, 120, "sd-1", "h3")
    go_out(backend, 120, "sd-2", "h4")
    [opened] = track(backend, now=130, since=50)
    assert set(opened) == CHANGE_KEYS
    assert (opened["event"], opened["cluster_id"], opened["reason"], opened["subject"], opened["hosts"]) == (
        "incident_opened",
        "c1",
        "storage_domain_unreachable",
        "sd-1",
        3,
    )
    [entry] = audit(backend, event="incident_opened")
    assert (entry["object_type"], entry["object_id"], entry["actor"], entry["reason"], entry["at"]) == (
        "cluster",
        "c1",
        "auto",
        "storage_domain_unreachable",
        at(130),
    )
    assert entry["details"] == {"incident": opened["id"], "subject": "sd-1", "hosts": 3}
    [inc] = open_incidents(backend)
    assert set(inc) == INCIDENT_KEYS
    assert (inc["id"], inc["subject"], inc["hosts"], inc["opened_at"], inc["closed_at"]) == (
        opened["id"],
        "sd-1",
        3,
        at(130),
        None,
    )
    # One open incident per cluster and subject: a later tick, or more hosts, open no other.
    go_out(backend, 140, "sd-1", "h5")
    assert track(backend, now=150, since=50) == []
    assert len(open_incidents(backend)) == 1


def test_only_hosts_out_within_the_window_open_an_incident(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3", status="up")
    go_out(backend, 10, "sd-1", "h1", "h2")
    go_out(backend, 200, "sd-1", "h3")
    assert track(backend, now=210, since=100) == []  # one recent of three out
    [opened] = track(backend, now=210, since=10, min_hosts=3)  # the bound counts
    assert opened["hosts"] == 3


def test_an_incident_closes_when_no_host_is_out_for_its_subject(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3", status="up")
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c2"))
        for h in ("b1", "b2"):
            backend.repos.hosts.insert_host(conn, h, "c2", f"http://{h}", T0)
            backend.repos.hosts.set_status(conn, h, "up", None, "ok", T0)
    go_out(backend, 10, "sd-1", "h1", "h2", "h3")
    go_out(backend, 10, "sd-1", "b1", "b2")
    [opened] = track(backend, now=20, since=0)
    assert opened["cluster_id"] == "c1"  # c2 had two, under the threshold
    [opened_c2] = track(backend, now=25, since=0, min_hosts=2)
    assert (opened_c2["cluster_id"], opened_c2["subject"]) == ("c2", "sd-1")
    set_up(backend, "h1", "h2")
    assert track(backend, now=30, since=0) == []  # h3 is still out for it
    set_up(backend, "h3")
    [closed] = track(backend, now=40, since=0)
    assert (closed["event"], closed["id"], closed["cluster_id"], closed["subject"], closed["hosts"]) == (
        "incident_closed",
        opened["id"],
        "c1",
        "sd-1",
        3,
    )
    [entry] = audit(backend, event="incident_closed")
    assert (entry["object_id"], entry["at"], entry["details"]) == (
        "c1",
        at(40),
        {"incident": opened["id"], "subject": "sd-1", "hosts": 3},
    )
    assert [(i["cluster_id"], i["id"]) for i in open_incidents(backend)] == [("c2", opened_c2["id"])]
    assert track(backend, now=50, since=0) == []  # closed once
    # The subject going out again opens a new incident.
    go_out(backend, 60, "sd-1", "h1", "h2", "h3")
    [again] = track(backend, now=70, since=55)
    assert again["event"] == "incident_opened" and again["id"] not in (opened["id"], opened_c2["id"])


def test_open_incidents_are_oldest_first(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3", "h4", "h5", "h6", status="up")
    go_out(backend, 10, "sd-2", "h1", "h2", "h3")
    track(backend, now=20, since=0)
    go_out(backend, 30, "sd-1", "h4", "h5", "h6")
    track(backend, now=40, since=0)
    assert [(i["subject"], i["opened_at"]) for i in open_incidents(backend)] == [
        ("sd-2", at(20)),
        ("sd-1", at(40)),
    ]
