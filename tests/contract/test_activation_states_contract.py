"""The activation's states on the fake and on PostgreSQL: sending, sent (a deadline on the
database's clock), its steps, unknown outcomes in a row, a domain's sent connect and maintenance."""

from __future__ import annotations

from models.domain import DomainStatus
from tests.contract.conftest import Backend
from tests.contract.helpers import T0, at, audit, host, is_db_now, queue, seed, tx


def _sent(backend: Backend, activation_id: str = "a1", hold_s: float = 30.0) -> int:
    with tx(backend) as conn:
        fence = backend.repos.activations.begin(conn, activation_id, T0)
        assert fence is not None
        assert backend.repos.activations.mark_sent(
            conn, activation_id, fence=fence, answer="running", protocol=2, hold_s=hold_s, was_status="error"
        )
    return int(fence)


def test_sent_only_from_sending_with_its_fence_and_held_until_its_deadline(backend: Backend) -> None:
    seed(backend, "h1")
    queue(backend, [("a1", "h1")])
    with tx(backend) as conn:
        assert not backend.repos.activations.mark_sent(  # queued: no fence yet
            conn, "a1", fence=1, answer="running", protocol=2, hold_s=30
        )
        fence = backend.repos.activations.begin(conn, "a1", T0)
        assert fence == 1
        assert backend.repos.activations.get(conn, "a1").state == "sending"  # type: ignore[union-attr]
        assert not backend.repos.activations.mark_sent(
            conn, "a1", fence=2, answer="running", protocol=2, hold_s=30
        )
        assert backend.repos.activations.mark_sent(
            conn, "a1", fence=1, answer="unknown", protocol=1, hold_s=30, was_status="error"
        )
        assert backend.repos.activations.begin(conn, "a1", T0) is None  # a sent init is never re-begun
        row = backend.repos.activations.get(conn, "a1")
        in_flight = backend.repos.activations.in_flight(conn, "h1")
    assert row is not None and in_flight is not None and in_flight.id == "a1"
    assert (row.state, row.answer, row.protocol, row.was_status, row.past_deadline) == (
        "sent",
        "unknown",
        1,
        "error",
        False,
    )
    assert row.deadline_at is not None and is_db_now(row.deadline_at - (at(30) - T0))
    with tx(backend) as conn:  # the one-in-flight index still holds the host
        created = backend.repos.activations.create_many(
            conn,
            [("a2", "h1")],
            trigger="manual",
            actor="bob",
            now=T0,
            statuses=["non_operational"],
            reason="t",
        )
        assert created == []
        assert backend.repos.activations.finish(
            conn, "a1", state="done", outcome="up", reason=None, detail="ok", now=at(1), fence=1
        )
    assert host(backend, "h1").in_flight is False


def test_a_sent_record_past_its_deadline_says_so_and_is_reaped_after_its_grace(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    queue(backend, [("a1", "h1"), ("a2", "h2")])
    _sent(backend, "a1", hold_s=-100)  # long past its deadline
    _sent(backend, "a2", hold_s=30)
    with tx(backend) as conn:
        assert backend.repos.activations.get(conn, "a1").past_deadline is True  # type: ignore[union-attr]
        assert backend.repos.activations.get(conn, "a2").past_deadline is False  # type: ignore[union-attr]
        reaped = backend.repos.activations.reap(conn, now=at(5), queued_ttl_s=600, running_ttl_s=60)
    assert [(r["id"], r["was"]) for r in reaped] == [("a1", "sent")]
    h1 = host(backend, "h1")
    assert h1.fence == 2  # bumped past the holder's, and marked for the agent
    with tx(backend) as conn:
        assert [p.host_id for p in backend.repos.hosts.pending_fences(conn, 10)] == ["h1"]


def test_steps_are_listed_per_activation_in_order(backend: Backend) -> None:
    seed(backend, "h1")
    queue(backend, [("a1", "h1")])
    with tx(backend) as conn:
        backend.repos.activations.add_step(conn, "a1", "send", "a1", "sent")
        backend.repos.activations.add_step(conn, "a1", "check", "t-2", "up")
        backend.repos.activations.add_step(conn, "ghost", "check", "t-3", "up")  # no such activation
        steps = backend.repos.activations.steps(conn, ["a1", "ghost"])
    assert [(s.activation_id, s.step, s.task_id, s.outcome) for s in steps] == [
        ("a1", "send", "a1", "sent"),
        ("a1", "check", "t-2", "up"),
    ]
    assert is_db_now(steps[0].at)


def test_the_status_before_the_first_attempt_is_kept_for_a_retried_one(backend: Backend) -> None:
    seed(backend, "h1")
    queue(backend, [("a1", "h1")])
    with tx(backend) as conn:
        assert not backend.repos.activations.note_was_status(
            conn, "a1", fence=1, was_status="error"
        )()  # queued
        first = backend.repos.activations.begin(conn, "a1", T0)
        assert first is not None
        assert not backend.repos.activations.note_was_status(conn, "a1", fence=first + 1, was_status="up")()
        assert backend.repos.activations.note_was_status(conn, "a1", fence=first, was_status="error")()
        again = backend.repos.activations.begin(conn, "a1", T0)  # a retried attempt
        assert again is not None and again > first
        assert backend.repos.activations.note_was_status(conn, "a1", fence=again, was_status="initializing")()
        row = backend.repos.activations.get(conn, "a1")
    assert row is not None and row.was_status == "error"


def _closed_in_order(backend: Backend, ends: list[tuple[str, str]]) -> None:
    """Queue and close one activation of h1 per (state, outcome), a second apart."""
    for n, (state, outcome) in enumerate(ends):
        queue(backend, [(f"a{n}", "h1")])
        with tx(backend) as conn:
            assert backend.repos.activations.finish(
                conn, f"a{n}", state=state, outcome=outcome, reason=None, detail="x", now=at(n), fence=None
            )


def test_unknown_outcomes_in_a_row_count_since_the_last_real_result(backend: Backend) -> None:
    seed(backend, "h1")
    _closed_in_order(
        backend,
        [
            ("abandoned", "outcome_unknown"),
            ("failed", "failed"),
            ("abandoned", "outcome_unknown"),
            ("abandoned", "lock_lost"),
            ("abandoned", "outcome_unknown"),
        ],
    )
    with tx(backend) as conn:
        assert backend.repos.activations.unknown_streak(conn, "h1") == 2
        assert backend.repos.activations.unknown_streak(conn, "h2") == 0


def test_unpushed_fences_count_with_unknown_outcomes_and_unsent_activations_reset_nothing(
    backend: Backend,
) -> None:
    seed(backend, "h1")
    _closed_in_order(
        backend,
        [
            ("abandoned", "outcome_unknown"),
            ("abandoned", "fence_not_pushed"),
            ("failed", "not_enqueued"),
            ("abandoned", "outcome_unknown"),
        ],
    )
    with tx(backend) as conn:
        # A message the broker refused never reached the host: no result, the streak goes on.
        assert backend.repos.activations.unknown_streak(conn, "h1") == 3


def test_postpone_sets_the_next_attempt_without_a_failure_and_never_sooner(backend: Backend) -> None:
    seed(backend, "h1")
    fence = host(backend, "h1").fence
    with tx(backend) as conn:
        assert backend.repos.safety.postpone(conn, "h1", fence, at(60))
        assert not backend.repos.safety.postpone(conn, "h1", fence + 1, at(600))  # fenced
        assert backend.repos.safety.postpone(conn, "h1", fence, at(30))
    h1 = host(backend, "h1")
    assert (h1.next_attempt_at, h1.failures) == (at(60), 0)


def test_a_domains_sent_connect_and_maintenance_taking_it_with_a_fence_bump(backend: Backend) -> None:
    with tx(backend) as conn:
        backend.repos.storage.ensure(conn, ["sd-1"], T0)
        backend.repos.storage.set_status(conn, "sd-1", DomainStatus.INACTIVE.value, "lost", T0)
        assert backend.repos.storage.queue_activation(
            conn, "x1", "sd-1", trigger="auto", actor="auto", now=T0
        )
        fence = backend.repos.storage.begin_activation(conn, "x1", T0)
        assert fence == 1
        assert not backend.repos.storage.mark_activation_sent(
            conn, "x1", fence=2, answer="unknown", target="h1", hold_s=30
        )
        assert backend.repos.storage.mark_activation_sent(
            conn, "x1", fence=1, answer="unknown", target="h1", hold_s=30
        )
        row = backend.repos.storage.get_activation(conn, "x1")
        assert row is not None
        assert (row["state"], row.get("target"), row.get("past_deadline")) == ("sent", "h1", False)
        assert backend.repos.storage.abandon_for_maintenance(conn, "sd-1", at(1)) == "x1"
        assert backend.repos.storage.abandon_for_maintenance(conn, "sd-1", at(2)) is None
        done = backend.repos.storage.get_activation(conn, "x1")
        sd = backend.repos.storage.get(conn, "sd-1")
        assert not backend.repos.storage.set_status(conn, "sd-1", "active", "late", at(3), fence=1)
    assert done is not None and (done["state"], done["outcome"]) == ("abandoned", "maintenance")
    assert sd is not None and sd.fence == 3  # bumped by each maintenance, past the holder's
    assert audit(backend, event="activation_abandoned") == []  # the service audits it
