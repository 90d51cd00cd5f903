"""One set of repository tests, run against the in-memory fake and against real PostgreSQL.

Every assertion here must hold on both backends: that is what keeps ``tests.fakes`` honest, so
that the service unit tests built on it say something about production.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from autorecovery.ports.rows import Evaluated
from models.changes import report_digest
from models.domain import Cluster, HostStatus, Report
from models.policy import Decision, Transition
from tests.contract.conftest import Backend
from tests.contract.helpers import (
    AUDIT_KEYS,
    HOST_ROW_KEYS,
    NON_OP,
    RECOVERABLE,
    T0,
    at,
    audit,
    backdate,
    host,
    host_row,
    is_db_now,
    queue,
    report,
    seed,
    tx,
)

# --- transactions -------------------------------------------------------------------------------


def test_a_failed_block_rolls_back_everything(backend: Backend) -> None:
    seed(backend, "h1")
    with pytest.raises(RuntimeError, match="boom"), tx(backend) as conn:
        backend.repos.hosts.insert_host(conn, "h2", "c1", "http://h2", T0)
        backend.repos.hosts.set_status(conn, "h1", "up", None, "x", at(1))
        backend.repos.audit.add(conn, at=T0, object_type="host", object_id="h1", event="e", actor="a")
        raise RuntimeError("boom")
    with tx(backend) as conn:
        assert backend.repos.hosts.get_host(conn, "h2") is None
        assert backend.repos.audit.query(conn) == []
    assert host(backend, "h1").status is NON_OP


# --- clusters and hosts -------------------------------------------------------------------------


def test_upsert_cluster_creates_then_updates(backend: Backend) -> None:
    c = Cluster("c1", frozenset({"mgmt", "vmnet"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_cluster(conn, c) is True
    changed = Cluster("c1", frozenset({"mgmt"}), frozenset(), "4.10", frozenset())
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_cluster(conn, changed) is False
        assert backend.repos.hosts.upsert_cluster(conn, Cluster("c0")) is True
    with tx(backend) as conn:
        assert backend.repos.hosts.get_cluster(conn, "c1") == changed
        assert backend.repos.hosts.get_cluster(conn, "nope") is None
        clusters = backend.repos.hosts.all_clusters(conn)
    assert clusters == {"c0": Cluster("c0"), "c1": changed}
    assert list(clusters) == ["c0", "c1"]


def test_insert_host_registers_an_unassigned_host(backend: Backend) -> None:
    seed(backend, status=None)
    with tx(backend) as conn:
        assert backend.repos.hosts.insert_host(conn, "h1", "c1", "http://a:1", T0) is True
        assert backend.repos.hosts.insert_host(conn, "h1", "c1", "http://b:2", at(5)) is False
        assert backend.repos.hosts.insert_host(conn, "h2", "c1", "http://a:2", T0, adopt=True) is True
    with tx(backend) as conn:
        loaded = backend.repos.hosts.get_host(conn, "h1", for_update=True)
        adopted = backend.repos.hosts.get_host(conn, "h2")
    assert loaded is not None and adopted is not None
    assert (loaded[0].adopt, adopted[0].adopt) == (False, True)
    h, rep, row = loaded
    assert (h.id, h.cluster_id, h.agent_url) == ("h1", "c1", "http://a:1")
    assert h.status is HostStatus.UNASSIGNED
    assert h.reason is None
    assert h.detail == "registered; waiting for the first report"
    assert h.autorecovery is True
    assert h.fence == 0
    assert h.in_flight is False
    assert h.status_changed_at == T0
    assert rep is None
    assert set(row) == HOST_ROW_KEYS
    assert row["last_decision"] is None and row["last_decision_at"] is None


def test_insert_host_into_an_unknown_cluster_is_an_integrity_error(backend: Backend) -> None:
    seed(backend, "h1", status=None)
    with pytest.raises(psycopg.IntegrityError), tx(backend) as conn:
        backend.repos.hosts.insert_host(conn, "h2", "nope", "http://h2", T0)
    with tx(backend) as conn:
        assert backend.repos.hosts.get_host(conn, "h2") is None
        # An id already taken is a plain False, whatever the cluster.
        assert backend.repos.hosts.insert_host(conn, "h1", "nope", "http://h1", T0) is False


def test_get_host_unknown_is_none(backend: Backend) -> None:
    with tx(backend) as conn:
        assert backend.repos.hosts.get_host(conn, "ghost") is None


def test_batch_after_pages_by_id(backend: Backend) -> None:
    seed(backend, "h-03", "h-01", "h-05", "h-02", "h-04")
    with tx(backend) as conn:
        first = backend.repos.hosts.batch_after(conn, "", 2)
        second = backend.repos.hosts.batch_after(conn, first[-1][0].id, 2)
        third = backend.repos.hosts.batch_after(conn, second[-1][0].id, 2)
        empty = backend.repos.hosts.batch_after(conn, third[-1][0].id, 2)
    assert [r[0].id for r in first] == ["h-01", "h-02"]
    assert [r[0].id for r in second] == ["h-03", "h-04"]
    assert [r[0].id for r in third] == ["h-05"]
    assert empty == []


def test_list_hosts_filters(backend: Backend) -> None:
    seed(backend, "a1", "a2", "a3", "a4")
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c2"))
        backend.repos.hosts.insert_host(conn, "b1", "c2", "http://b1", T0)
        backend.repos.hosts.set_status(conn, "a2", "up", None, "ok", T0)
        backend.repos.hosts.set_autorecovery(conn, "a3", False)

    def ids(**kw: Any) -> list[str]:
        with tx(backend) as conn:
            return [r[0].id for r in backend.repos.hosts.list_hosts(conn, **kw)]

    assert ids() == ["a1", "a2", "a3", "a4", "b1"]
    assert ids(status="up") == ["a2"]
    assert ids(status="non_operational") == ["a1", "a3", "a4"]
    assert ids(cluster_id="c2") == ["b1"]
    assert ids(autorecovery=False) == ["a3"]
    assert ids(autorecovery=True, cluster_id="c1", status="non_operational") == ["a1", "a4"]
    assert ids(limit=2) == ["a1", "a2"]
    assert ids(after="a2", limit=2) == ["a3", "a4"]
    assert ids(status="maintenance") == []


def test_count_by_status(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3")
    with tx(backend) as conn:
        backend.repos.hosts.set_status(conn, "h3", "up", None, "ok", T0)
        backend.repos.hosts.insert_host(conn, "h4", "c1", "http://h4", T0)
    with tx(backend) as conn:
        assert backend.repos.hosts.count_by_status(conn) == {
            "non_operational": 2,
            "up": 1,
            "unassigned": 1,
        }


def test_existing_ids_names_the_registered_hosts(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    with tx(backend) as conn:
        assert backend.repos.hosts.existing_ids(conn, ["h2", "h9", "h1"]) == {"h1", "h2"}
        assert backend.repos.hosts.existing_ids(conn, []) == set()


def test_delete_cluster_only_without_hosts(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c2"))
        assert backend.repos.hosts.delete_cluster(conn, "c1") == "has_hosts"
        assert backend.repos.hosts.delete_cluster(conn, "c9") == "missing"
        assert backend.repos.hosts.delete_cluster(conn, "c2") == "deleted"
    with tx(backend) as conn:
        assert set(backend.repos.hosts.all_clusters(conn)) == {"c1"}
        assert backend.repos.hosts.delete_cluster(conn, "c2") == "missing"


# --- reports ------------------------------------------------------------------------------------


def test_upsert_reports_round_trips_a_report(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    sent = report(
        "h1",
        at(-3),
        source="push",
        repairable=frozenset({"storage_domain:sd-1", "network:x"}),
        state_unwritable="cannot save the agent's state: No space left on device",
    )
    silent = Report("h2", at(-1), agent_reachable=False, error="ConnectTimeout")
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_reports(conn, [sent, silent], at(0)) == 2
    with tx(backend) as conn:
        got = backend.repos.hosts.get_host(conn, "h1")
        got2 = backend.repos.hosts.get_host(conn, "h2")
    assert got is not None and got2 is not None
    assert got[1] == sent
    assert got.state["report_received_at"] == at(0)
    assert got2[1] == silent


def test_the_last_usable_report_is_remembered_through_failed_pulls(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        assert backend.repos.hosts.get_host(conn, "h1").state["report_heard_at"] is None  # type: ignore[union-attr]
        backend.repos.hosts.upsert_reports(conn, [report("h1", at(-60))], at(-60))
    for second in (-40, -20):  # the agent stops answering: each pull stores what it saw
        with tx(backend) as conn:
            silent = Report("h1", at(second), agent_reachable=False, error="cannot connect")
            backend.repos.hosts.upsert_reports(conn, [silent], at(second))
    with tx(backend) as conn:
        got = backend.repos.hosts.get_host(conn, "h1")
    assert got is not None and got.report.reported_at == at(-20)  # the last attempt
    assert got.state["report_heard_at"] == at(-60)  # the last time it answered
    with tx(backend) as conn:
        backend.repos.hosts.upsert_reports(conn, [report("h1", at(-5))], at(-5))
        assert backend.repos.hosts.get_host(conn, "h1").state["report_heard_at"] == at(-5)  # type: ignore[union-attr]


def test_upsert_reports_never_replaces_a_newer_report(backend: Backend) -> None:
    seed(backend, "h1")
    newer = report("h1", at(10), kvm=True)
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_reports(conn, [newer], at(10)) == 1
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_reports(conn, [report("h1", at(5), kvm=False)], at(11)) == 0
    with tx(backend) as conn:
        got = backend.repos.hosts.get_host(conn, "h1")
    assert got is not None and got[1] == newer
    # The same time replaces (a re-sent report wins), a later one too.
    same = report("h1", at(10), version="4.6")
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_reports(conn, [same], at(12)) == 1
    with tx(backend) as conn:
        got = backend.repos.hosts.get_host(conn, "h1")
    assert got is not None and got[1] == same


@pytest.mark.parametrize(
    "ahead", [timedelta(hours=1), datetime(9999, 12, 31, tzinfo=UTC) - T0], ids=["1h", "9999"]
)
def test_a_stored_report_dated_ahead_does_not_block_later_correct_reports(
    backend: Backend, ahead: timedelta
) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:  # stored before future dates were refused, or by a jumped clock
        assert backend.repos.hosts.upsert_reports(conn, [report("h1", T0 + ahead)], at(0)) == 1
    with tx(backend) as conn:  # older than when the future-dated one arrived: still refused
        assert backend.repos.hosts.upsert_reports(conn, [report("h1", at(-5))], at(10)) == 0
    correct = report("h1", at(10), version="4.6")
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_reports(conn, [correct], at(10)) == 1
    with tx(backend) as conn:
        got = backend.repos.hosts.get_host(conn, "h1")
    assert got is not None and got[1] == correct


def test_upsert_reports_ignores_unknown_hosts_and_empty_input(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_reports(conn, [], T0) == 0
        assert backend.repos.hosts.upsert_reports(conn, [report("ghost", T0), report("h1", T0)], T0) == 1


def test_upsert_reports_with_one_host_twice_fails_the_statement(backend: Backend) -> None:
    seed(backend, "h1")
    with pytest.raises(psycopg.errors.CardinalityViolation), tx(backend) as conn:
        backend.repos.hosts.upsert_reports(conn, [report("h1", at(1)), report("h1", at(2))], at(2))


def test_upsert_reports_with_a_count_out_of_integer_range_fails_the_statement(backend: Backend) -> None:
    seed(backend, "h1")
    with pytest.raises(psycopg.errors.NumericValueOutOfRange), tx(backend) as conn:
        backend.repos.hosts.upsert_reports(conn, [report("h1", T0, mem_free_mb=2**31)], T0)
    with tx(backend) as conn:
        assert backend.repos.hosts.upsert_reports(conn, [report("h1", T0, mem_free_mb=2**31 - 1)], T0) == 1


# --- transitions, decisions, flags, status ------------------------------------------------------


def test_apply_transitions_is_guarded_by_the_expected_status(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3", status="up")
    changes = [
        Transition("h1", HostStatus.UP, NON_OP, "kvm_not_running", "kvm is not running"),
        Transition("h2", NON_OP, HostStatus.NON_RESPONSIVE, "no_report", "x"),  # h2 is up: skipped
        Transition("ghost", HostStatus.UP, NON_OP, "general", "x"),
    ]
    with tx(backend) as conn:
        assert backend.repos.hosts.apply_transitions(conn, [], at(5), "auto") == []
        changed = backend.repos.hosts.apply_transitions(conn, changes, at(5), "auto")
    assert changed == ["h1"]
    h1 = host(backend, "h1")
    assert (h1.status, h1.reason, h1.detail) == (NON_OP, "kvm_not_running", "kvm is not running")
    assert h1.status_changed_at == at(5)
    assert host(backend, "h2").status is HostStatus.UP
    entries = audit(backend, event="status_changed")
    assert len(entries) == 1
    entry = entries[0]
    assert set(entry) == AUDIT_KEYS
    assert (entry["object_type"], entry["object_id"], entry["actor"], entry["reason"], entry["at"]) == (
        "host",
        "h1",
        "auto",
        "kvm_not_running",
        at(5),
    )
    assert entry["details"] == {"from": "up", "to": "non_operational", "detail": "kvm is not running"}


def test_apply_transitions_keeps_status_changed_at_when_only_the_reason_changes(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    with tx(backend) as conn:
        changed = backend.repos.hosts.apply_transitions(
            conn,
            [
                Transition("h1", NON_OP, NON_OP, "network_interface_down", "network vmnet link down"),
                Transition("h2", NON_OP, HostStatus.NON_RESPONSIVE, "agent_unreachable", "timeout"),
            ],
            at(9),
            "auto",
        )
    assert sorted(changed) == ["h1", "h2"]
    h1 = host(backend, "h1")
    assert (h1.reason, h1.detail, h1.status_changed_at) == (
        "network_interface_down",
        "network vmnet link down",
        T0,
    )
    assert host(backend, "h2").status_changed_at == at(9)
    assert len(audit(backend, event="status_changed")) == 2


def test_record_decisions_writes_only_what_changed(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    first = [
        Decision("h1", "activate", "fresh report"),
        Decision("h2", "no_report", "none yet"),
        Decision("ghost", "activate", "x"),
    ]
    with tx(backend) as conn:
        assert backend.repos.hosts.record_decisions(conn, [], at(1))() == 0
        assert backend.repos.hosts.record_decisions(conn, first, at(1))() == 2
    with tx(backend) as conn:
        assert backend.repos.hosts.record_decisions(conn, first, at(2))() == 0
        assert (
            backend.repos.hosts.record_decisions(
                conn,
                [Decision("h1", "activate", "fresh report"), Decision("h2", "no_report", "other")],
                at(3),
            )()
            == 1
        )
    r1, r2 = host_row(backend, "h1"), host_row(backend, "h2")
    assert (r1["last_decision"], r1["last_decision_detail"], r1["last_decision_at"]) == (
        "activate",
        "fresh report",
        at(1),
    )
    assert (r2["last_decision"], r2["last_decision_detail"], r2["last_decision_at"]) == (
        "no_report",
        "other",
        at(3),
    )


def test_set_autorecovery_returns_the_previous_value(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        assert backend.repos.hosts.set_autorecovery(conn, "h1", False) is True
        assert backend.repos.hosts.set_autorecovery(conn, "h1", False) is False
        assert backend.repos.hosts.set_autorecovery(conn, "h1", True) is False
        assert backend.repos.hosts.set_autorecovery(conn, "ghost", True) is None
    assert host(backend, "h1").autorecovery is True


def test_set_agent_url_returns_the_previous_url(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        assert backend.repos.hosts.set_agent_url(conn, "h1", "http://moved:9") == "http://h1"
        assert backend.repos.hosts.set_agent_url(conn, "h1", "http://moved:9") == "http://moved:9"
        assert backend.repos.hosts.set_agent_url(conn, "ghost", "http://x") is None
    assert host(backend, "h1").agent_url == "http://moved:9"


def test_set_status_checks_the_fence_when_given(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        assert backend.repos.hosts.set_status(conn, "h1", "up", None, "ok", at(1), fence=3) is False
        assert backend.repos.hosts.set_status(conn, "h1", "initializing", None, "a", at(2), fence=0) is True
        assert backend.repos.hosts.set_status(conn, "ghost", "up", None, "ok", at(1)) is False
    h1 = host(backend, "h1")
    assert (h1.status, h1.reason, h1.detail, h1.status_changed_at) == (
        HostStatus.INITIALIZING,
        None,
        "a",
        at(2),
    )
    with tx(backend) as conn:  # same status: the change time stays, the row still counts
        assert backend.repos.hosts.set_status(conn, "h1", "initializing", "r", "b", at(3)) is True
    h1 = host(backend, "h1")
    assert (h1.reason, h1.detail, h1.status_changed_at) == ("r", "b", at(2))


def test_delete_host_refuses_while_an_activation_is_in_flight(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    assert queue(backend, [("a1", "h1")]) == [("a1", "h1")]
    with tx(backend) as conn:
        backend.repos.hosts.upsert_reports(conn, [report("h2", T0)], T0)
        assert backend.repos.hosts.delete_host(conn, "h1") is False
        assert backend.repos.hosts.delete_host(conn, "ghost") is False
    with tx(backend) as conn:
        assert backend.repos.activations.finish(
            conn, "a1", state="failed", outcome="failed", reason="x", detail="x", now=at(1), fence=None
        )
        assert backend.repos.hosts.delete_host(conn, "h1") is True
        assert backend.repos.hosts.delete_host(conn, "h2") is True
    with tx(backend) as conn:
        assert backend.repos.hosts.get_host(conn, "h1") is None
        assert backend.repos.activations.get(conn, "a1") is None  # cascaded
        assert backend.repos.hosts.list_hosts(conn) == []
        # The audit log outlives the host.
        assert backend.repos.audit.query(conn, object_id="h1", event="activation_queued") != []


# --- activations --------------------------------------------------------------------------------


def test_create_many_queues_one_per_host_and_audits_each(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    with tx(backend) as conn:
        backend.repos.hosts.set_status(conn, "h2", "up", None, "ok", T0)
        assert (
            backend.repos.activations.create_many(
                conn, [], trigger="auto", actor="auto", now=T0, statuses=RECOVERABLE, reason="r"
            )
            == []
        )
    created = queue(
        backend,
        [("a1", "h1"), ("a2", "h1"), ("a3", "h2"), ("a4", "ghost")],
        reason="fresh report shows no problem",
    )
    assert created == [("a1", "h1")]
    # A second tick finds the host held; a duplicate id is refused.
    assert queue(backend, [("a5", "h1")]) == []
    with tx(backend) as conn:
        act = backend.repos.activations.get(conn, "a1")
        assert backend.repos.activations.get(conn, "a2") is None
        assert backend.repos.activations.in_flight(conn, "h1") == act
        assert backend.repos.activations.in_flight(conn, "h2") is None
    assert act is not None
    assert (act.host_id, act.trigger, act.actor, act.state, act.fence) == (
        "h1",
        "auto",
        "auto",
        "queued",
        None,
    )
    assert (act.outcome, act.reason, act.detail, act.started_at, act.ended_at) == (None,) * 5
    assert is_db_now(act.queued_at)  # the lease is the database's clock, not the caller's T0
    assert host(backend, "h1").in_flight is True
    entries = audit(backend, event="activation_queued")
    assert len(entries) == 1
    assert (entries[0]["object_id"], entries[0]["actor"], entries[0]["reason"]) == (
        "h1",
        "auto",
        "fresh report shows no problem",
    )
    assert entries[0]["details"] == {"activation_id": "a1", "trigger": "auto"}


def test_create_many_refuses_a_taken_activation_id(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    assert queue(backend, [("a1", "h1")]) == [("a1", "h1")]
    assert queue(backend, [("a1", "h2")]) == []
    with tx(backend) as conn:
        act = backend.repos.activations.get(conn, "a1")
    assert act is not None and act.host_id == "h1"


def test_create_many_many_hosts_at_once(backend: Backend) -> None:
    ids = [f"h{i:02d}" for i in range(12)]
    seed(backend, *ids)
    created = queue(backend, [(f"a-{h}", h) for h in ids], trigger="manual", actor="alice")
    assert sorted(created) == sorted((f"a-{h}", h) for h in ids)
    assert len(audit(backend, event="activation_queued", actor="alice")) == 12


def test_begin_bumps_the_host_fence_each_time(backend: Backend) -> None:
    seed(backend, "h1")
    queue(backend, [("a1", "h1")])
    with tx(backend) as conn:
        fence = backend.repos.activations.begin(conn, "a1", at(1))
    assert fence == 1
    assert host(backend, "h1").fence == 1
    with tx(backend) as conn:
        act = backend.repos.activations.get(conn, "a1")
    assert act is not None
    assert (act.state, act.fence) == ("sending", 1) and is_db_now(act.started_at)
    with tx(backend) as conn:  # a retried task begins again under a new token
        assert backend.repos.activations.begin(conn, "a1", at(2)) == 2
        assert backend.repos.activations.begin(conn, "ghost", at(2)) is None
        assert (
            backend.repos.activations.finish(
                conn, "a1", state="done", outcome="up", reason=None, detail="ok", now=at(3), fence=2
            )
            is True
        )
    with tx(backend) as conn:
        assert backend.repos.activations.begin(conn, "a1", at(4)) is None
    assert host(backend, "h1").fence == 2


def test_finish_without_a_fence_closes_only_an_activation_that_never_began(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    queue(backend, [("a1", "h1"), ("a2", "h2")])
    with tx(backend) as conn:
        assert backend.repos.activations.begin(conn, "a1", at(1)) is not None
        # A duplicate delivery that found the lock busy must not close the running one...
        assert (
            backend.repos.activations.finish(
                conn, "a1", state="skipped", outcome="lock_busy", reason=None, detail=None,
                now=at(2), fence=None,
            )
            is False
        )
        # ...but may close one that no delivery began.
        assert (
            backend.repos.activations.finish(
                conn, "a2", state="skipped", outcome="lock_busy", reason=None, detail=None,
                now=at(2), fence=None,
            )
            is True
        )
        assert backend.repos.activations.get(conn, "a1").state == "sending"


def test_finish_checks_state_and_fence(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    queue(backend, [("a1", "h1"), ("a2", "h2")])
    with tx(backend) as conn:
        fence = backend.repos.activations.begin(conn, "a1", at(1))
        assert fence is not None
        # A queued activation has no token yet: a fenced finish cannot match it.
        assert (
            backend.repos.activations.finish(
                conn, "a2", state="failed", outcome="x", reason=None, detail=None, now=at(2), fence=1
            )
            is False
        )
        assert (
            backend.repos.activations.finish(
                conn, "a1", state="failed", outcome="x", reason=None, detail=None, now=at(2), fence=fence + 1
            )
            is False
        )
        assert (
            backend.repos.activations.finish(
                conn,
                "a1",
                state="failed",
                outcome="failed",
                reason="kvm_not_running",
                detail="kvm down",
                now=at(2),
                fence=fence,
            )
            is True
        )
        assert (
            backend.repos.activations.finish(
                conn, "a1", state="done", outcome="up", reason=None, detail=None, now=at(3), fence=None
            )
            is False
        )
        assert (
            backend.repos.activations.finish(
                conn, "ghost", state="failed", outcome="x", reason=None, detail=None, now=at(3), fence=None
            )
            is False
        )
    with tx(backend) as conn:
        act = backend.repos.activations.get(conn, "a1")
        assert backend.repos.activations.in_flight(conn, "h1") is None
    assert act is not None
    assert (act.state, act.outcome, act.reason, act.detail, act.ended_at) == (
        "failed",
        "failed",
        "kvm_not_running",
        "kvm down",
        at(2),
    )
    assert host(backend, "h1").in_flight is False
    # The host can be queued again once its activation closed.
    assert queue(backend, [("a3", "h1")], now=at(4)) == [("a3", "h1")]


def test_recent_is_newest_first_and_limited(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    for i in range(4):
        queue(backend, [(f"a{i}", "h1")], now=at(i))
        with tx(backend) as conn:
            backend.repos.activations.finish(
                conn, f"a{i}", state="skipped", outcome="x", reason=None, detail=None, now=at(i), fence=None
            )
    queue(backend, [("b0", "h2")])
    with tx(backend) as conn:
        assert [a.id for a in backend.repos.activations.recent(conn, "h1")] == ["a3", "a2", "a1", "a0"]
        assert [a.id for a in backend.repos.activations.recent(conn, "h1", limit=2)] == ["a3", "a2"]
        assert backend.repos.activations.recent(conn, "ghost") == []
        row = backend.repos.activations.recent(conn, "h2")[0]
    assert row.as_dict()["queued_at"] == row.queued_at.isoformat()


def test_reap_abandons_stuck_activations_and_bumps_fences(backend: Backend) -> None:
    seed(backend, "old-q", "new-q", "old-r", "new-r", "old-r2")
    queue(backend, [("aq-old", "old-q"), ("ar-old", "old-r"), ("ar2-old", "old-r2")])
    queue(backend, [("aq-new", "new-q"), ("ar-new", "new-r")])
    with tx(backend) as conn:
        for act_id in ("ar-old", "ar2-old", "ar-new"):
            assert backend.repos.activations.begin(conn, act_id, at(10)) == 1
        backend.repos.hosts.set_status(
            conn, "old-r", "initializing", None, "activation ar-old", at(10), fence=1
        )
    for act_id in ("aq-old", "ar-old", "ar2-old"):
        backdate(backend, "activations", act_id, 100)
    with tx(backend) as conn:
        reaped = backend.repos.activations.reap(conn, now=at(100), queued_ttl_s=40, running_ttl_s=60)
    assert sorted((r["id"], r["host_id"], r["was"]) for r in reaped) == [
        ("aq-old", "old-q", "queued"),
        ("ar-old", "old-r", "sending"),
        ("ar2-old", "old-r2", "sending"),
    ]
    with tx(backend) as conn:
        aq = backend.repos.activations.get(conn, "aq-old")
        ar = backend.repos.activations.get(conn, "ar-old")
        assert backend.repos.activations.get(conn, "aq-new").state == "queued"
        assert backend.repos.activations.get(conn, "ar-new").state == "sending"
    assert aq is not None and ar is not None
    assert (aq.state, aq.outcome, aq.detail, aq.ended_at) == (
        "abandoned",
        "abandoned",
        "no result in time (was queued)",
        at(100),
    )
    assert ar.detail == "no result in time (was sending)"
    # The initializing host goes back out, with a reason; the others keep their status.
    r = host(backend, "old-r")
    assert (r.status, r.reason, r.detail, r.status_changed_at, r.fence) == (
        NON_OP,
        "activation_failed",
        "activation abandoned: no result in time",
        at(100),
        2,
    )
    r2 = host(backend, "old-r2")
    assert (r2.status, r2.reason, r2.fence) == (NON_OP, "general", 2)
    q = host(backend, "old-q")
    assert (q.status, q.status_changed_at, q.fence, q.in_flight) == (NON_OP, T0, 1, False)
    assert host(backend, "new-r").fence == 1
    # The stale holder can write nothing any more.
    with tx(backend) as conn:
        assert backend.repos.hosts.set_status(conn, "old-r", "up", None, "x", at(101), fence=1) is False
        assert (
            backend.repos.activations.finish(
                conn,
                "ar-old",
                state="done",
                outcome="up",
                reason=None,
                detail=None,
                now=at(101),
                fence=1,
            )
            is False
        )
    entries = audit(backend, event="activation_abandoned")
    assert sorted((e["object_id"], e["details"]["was"], e["details"]["activation_id"]) for e in entries) == [
        ("old-q", "queued", "aq-old"),
        ("old-r", "sending", "ar-old"),
        ("old-r2", "sending", "ar2-old"),
    ]
    assert {(e["actor"], e["reason"], e["at"]) for e in entries} == {("auto", "no_result_in_time", at(100))}
    with tx(backend) as conn:  # nothing left to reap
        assert backend.repos.activations.reap(conn, now=at(100), queued_ttl_s=40, running_ttl_s=60) == []


def test_mark_enqueue_failed_closes_only_queued_ones(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    queue(backend, [("a1", "h1"), ("a2", "h2")])
    with tx(backend) as conn:
        backend.repos.activations.begin(conn, "a2", at(1))
        backend.repos.activations.mark_enqueue_failed(
            conn, [("a1", "h1"), ("a2", "h2")], at(2), "broker down"
        )
    with tx(backend) as conn:
        a1 = backend.repos.activations.get(conn, "a1")
        a2 = backend.repos.activations.get(conn, "a2")
    assert a1 is not None and a2 is not None
    assert (a1.state, a1.outcome, a1.detail, a1.ended_at) == ("failed", "not_enqueued", "broker down", at(2))
    assert a2.state == "sending"
    entries = audit(backend, event="activation_not_enqueued")
    assert [(e["object_id"], e["actor"], e["reason"], e["details"]) for e in entries] == [
        ("h1", "auto", "broker_unavailable", {"activation_id": "a1", "error": "broker down"}),
    ]


# --- audit --------------------------------------------------------------------------------------


def test_audit_query_filters_newest_first(backend: Backend) -> None:
    with tx(backend) as conn:
        for i in range(5):
            backend.repos.audit.add(
                conn,
                at=at(i),
                object_type="host" if i % 2 == 0 else "cluster",
                object_id=f"o{i % 3}",
                event=f"e{i % 2}",
                actor="alice" if i < 3 else "auto",
                reason=None if i else "first",
                details={"i": i, "tuple": (1, 2), "nested": {"ok": True}} if i == 0 else None,
            )
    everything = audit(backend)
    assert len(everything) == 5
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True)
    assert all(set(e) == AUDIT_KEYS for e in everything)
    oldest = everything[-1]
    assert (
        oldest["object_type"],
        oldest["object_id"],
        oldest["event"],
        oldest["actor"],
        oldest["reason"],
        oldest["at"],
    ) == ("host", "o0", "e0", "alice", "first", at(0))
    assert oldest["details"] == {"i": 0, "tuple": [1, 2], "nested": {"ok": True}}
    assert everything[0]["details"] == {}
    assert everything[0]["reason"] is None

    def seen(**kw: Any) -> list[datetime]:
        return [e["at"] for e in audit(backend, **kw)]

    assert seen(object_type="cluster") == [at(3), at(1)]
    assert seen(object_id="o0") == [at(3), at(0)]
    assert seen(actor="auto") == [at(4), at(3)]
    assert seen(event="e0") == [at(4), at(2), at(0)]
    assert seen(since=at(3)) == [at(4), at(3)]
    assert seen(limit=2) == [at(4), at(3)]
    assert seen(before_id=ids[1]) == [at(2), at(1), at(0)]
    assert seen(before_id=ids[1], limit=1) == [at(2)]
    assert seen(object_type="host", actor="alice", event="e0") == [at(2), at(0)]


def test_count_by_outcome(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3")
    queue(backend, [("a1", "h1"), ("a2", "h2")])
    queue(backend, [("m1", "h3")], trigger="manual", actor="alice")
    with tx(backend) as conn:
        assert backend.repos.activations.count_by_outcome(conn) == [
            {"trigger": "auto", "outcome": "queued", "n": 2},
            {"trigger": "manual", "outcome": "queued", "n": 1},
        ]
        backend.repos.activations.begin(conn, "a1", at(1))
        backend.repos.activations.finish(
            conn, "a2", state="skipped", outcome="lock_busy", reason=None, detail=None, now=at(1), fence=None
        )
    with tx(backend) as conn:
        assert backend.repos.activations.count_by_outcome(conn) == [
            {"trigger": "auto", "outcome": "lock_busy", "n": 1},
            {"trigger": "auto", "outcome": "sending", "n": 1},
            {"trigger": "manual", "outcome": "queued", "n": 1},
        ]


# --- what PostgreSQL cannot store ---------------------------------------------------------------
# A NUL (or a lone surrogate) in any text, and counts beyond ``integer``, fail the whole statement.
# The fake refuses them the same way, so that a service test sees what production would.

UNSTORABLE_REPORTS = [
    ("nul in version", {"version": "4.5\x00"}),
    ("nul in a network name", {"networks": {"mg\x00mt": True}}),
    ("nul in a storage domain name", {"storage_domains": {"sd\x00": True}}),
    ("nul in a cpu flag", {"cpu_flags": frozenset({"vmx\x00"})}),
    ("lone surrogate in version", {"version": "4.5\ud800"}),
    ("nul in an error", {"agent_reachable": False, "error": "bad report: networks.a\x00: x"}),
]


@pytest.mark.parametrize(
    "changes", [c for _, c in UNSTORABLE_REPORTS], ids=[n for n, _ in UNSTORABLE_REPORTS]
)
def test_a_report_with_unstorable_text_fails_the_whole_batch(
    backend: Backend, changes: dict[str, Any]
) -> None:
    seed(backend, "h1", "h2")
    with pytest.raises(psycopg.DataError), tx(backend) as conn:
        backend.repos.hosts.upsert_reports(conn, [report("h1", T0), report("h2", T0, **changes)], T0)
    with tx(backend) as conn:
        assert backend.repos.hosts.get_host(conn, "h1")[1] is None  # type: ignore[index]


def test_an_unstorable_count_fails_even_for_an_unknown_host(backend: Backend) -> None:
    seed(backend, "h1")
    with pytest.raises(psycopg.errors.NumericValueOutOfRange), tx(backend) as conn:
        backend.repos.hosts.upsert_reports(
            conn, [report("h1", T0), report("ghost", T0, vms_running=2**31)], T0
        )


def test_nul_in_text_fails_other_writes_too(backend: Backend) -> None:
    seed(backend, "h1")
    attempts = [
        lambda conn: backend.repos.hosts.set_status(conn, "h1", "non_operational", "general", "d\x00", T0),
        lambda conn: backend.repos.hosts.apply_transitions(
            conn, [Transition("h1", NON_OP, NON_OP, "general", "d\x00")], T0, "auto"
        ),
        lambda conn: backend.repos.hosts.record_decisions(conn, [Decision("h1", "x", "d\x00")], T0),
        lambda conn: backend.repos.audit.add(
            conn,
            at=T0,
            object_type="host",
            object_id="h1",
            event="e",
            actor="a",
            details={"message": "x\x00"},
        ),
        lambda conn: backend.repos.audit.add(
            conn, at=T0, object_type="host", object_id="h1", event="e", actor="a", reason="r\x00"
        ),
        lambda conn: backend.repos.hosts.get_host(conn, "h\x00"),
    ]
    for attempt in attempts:
        with pytest.raises(psycopg.DataError), tx(backend) as conn:
            attempt(conn)
    with tx(backend) as conn:
        assert backend.repos.audit.query(conn) == []
    assert host(backend, "h1").detail == "seeded"


def test_a_host_left_initializing_with_nothing_in_flight_is_reset(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3")
    queue(backend, [("a3", "h3")])
    with tx(backend) as conn:
        for host_id in ("h1", "h2", "h3"):
            backend.repos.hosts.set_status(conn, host_id, "initializing", None, "x", at(0))
        reset = backend.repos.activations.reset_orphans(conn, now=at(100), before=at(50))
        assert reset == ["h1", "h2"]  # h3 has an activation in flight
        h1 = backend.repos.hosts.get_host(conn, "h1")[0]  # type: ignore[index]
        assert (h1.status.value, h1.reason, h1.fence) == ("non_operational", "activation_failed", 1)
        assert backend.repos.activations.reset_orphans(conn, now=at(100), before=at(50)) == []
        events = backend.repos.audit.query(conn, object_id="h1", event="status_changed")
        assert events and events[0]["reason"] == "activation_failed"


def test_up_by_cluster_counts_the_up_hosts(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3")
    with tx(backend) as conn:
        assert backend.repos.safety.up_by_cluster(conn) == {}
        backend.repos.hosts.set_status(conn, "h1", "up", None, "x", at(1))
        backend.repos.hosts.set_status(conn, "h3", "up", None, "x", at(1))
    with tx(backend) as conn:
        assert backend.repos.safety.up_by_cluster(conn) == {"c1": 2}
        assert backend.repos.safety.cluster_sizes(conn) == {"c1": 3}


# --- times sent as JSON keep their instant --------------------------------------------------------
# A tick writes thousands of times inside ``jsonb`` parameters, as datetimes the JSON encoder
# writes itself: any zone and microseconds must arrive as the same instant.

ODD_ZONE = timezone(timedelta(hours=5, minutes=30))


def test_a_touched_report_keeps_its_time_to_the_microsecond_in_any_zone(backend: Backend) -> None:
    seed(backend, "h1")
    with tx(backend) as conn:
        backend.repos.hosts.upsert_reports(conn, [report("h1", T0)], T0)
        stored = backend.repos.hosts.get_host(conn, "h1")[1]  # type: ignore[index]
    assert stored is not None
    later = (T0 + timedelta(seconds=7, microseconds=123_457)).astimezone(ODD_ZONE)
    with tx(backend) as conn:
        touched_at = [(replace(stored, reported_at=later), report_digest(stored))]
        backend.repos.hosts.touch_reports(conn, touched_at, later)
        touched = backend.repos.hosts.get_host(conn, "h1")[1]  # type: ignore[index]
    assert touched is not None
    assert touched.reported_at == later


def test_an_evaluation_keeps_its_time_to_the_microsecond_in_any_zone(backend: Backend) -> None:
    seed(backend, "h1")
    until = (T0 + timedelta(hours=3, microseconds=999_999)).astimezone(ODD_ZONE)
    with tx(backend) as conn:
        backend.repos.hosts.record_evaluations(conn, [Evaluated("h1", "k", until, "healthy", False)])
    with tx(backend) as conn:
        (row,) = backend.repos.hosts.batch_rows(conn, ["h1"])()
    assert row.state["eval_until"] == until
    assert row.state["eval_key"] == "k"
