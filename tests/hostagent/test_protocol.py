"""The protocol state machine: fences, busy, idempotence, durable state, bounded results."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hostagent.persist import DiskStore, MemoryStore, StateStore
from hostagent.protocol import INIT_SCOPE, INTERRUPTED, InitBusy, ProtocolState, connect_scope
from models.errors import InvalidInput, StaleFence


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture(params=["memory", "disk"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> StateStore:
    return MemoryStore() if request.param == "memory" else _disk(tmp_path)


def test_a_fence_below_the_highest_is_refused_and_equal_or_higher_accepted(store: StateStore) -> None:
    state = ProtocolState(store, Clock())
    first, _ = state.begin(INIT_SCOPE, 5, "a1")
    state.finish(first, ok=True)
    with pytest.raises(StaleFence) as caught:
        state.begin(INIT_SCOPE, 4, "a2")
    assert caught.value.highest == 5
    again, is_new = state.begin(INIT_SCOPE, 5, "a3")
    assert is_new and again.fence == 5
    state.finish(again, ok=True)
    assert state.begin(INIT_SCOPE, 9, "a4")[1]
    assert state.highest() == 9


def test_a_second_operation_while_one_runs_is_busy_whatever_its_scope(store: StateStore) -> None:
    state = ProtocolState(store, Clock())
    holder, _ = state.begin(INIT_SCOPE, 3, "a1")
    for scope, fence, act in ((INIT_SCOPE, 4, "a2"), (connect_scope("sd-1"), 1, "c1")):
        with pytest.raises(InitBusy) as caught:
            state.begin(scope, fence, act)
        assert caught.value.body() == {"error": "busy", **holder.running_body()}
        assert caught.value.activation_id == "a1" and caught.value.fence == 3
    assert state.lookup(INIT_SCOPE, "a2") is None
    assert state.highest() == 3  # a refused call accepted no fence


def test_the_same_fence_and_activation_is_the_same_operation_running_or_ended(store: StateStore) -> None:
    state = ProtocolState(store, Clock())
    record, is_new = state.begin(INIT_SCOPE, 3, "a1")
    assert is_new
    assert state.begin(INIT_SCOPE, 3, "a1") == (record, False)
    ended = state.finish(record, ok=False, reason="storage_domain_unreachable", detail="sd-1")
    assert state.begin(INIT_SCOPE, 3, "a1") == (ended, False)
    assert ended.result_body() == {"ok": False, "reason": "storage_domain_unreachable", "detail": "sd-1"}
    # Even once a higher fence is known, a retry only reads the old result: nothing runs.
    state.raise_fence(10)
    assert state.begin(INIT_SCOPE, 3, "a1") == (ended, False)


def test_raise_fence_never_lowers(store: StateStore) -> None:
    state = ProtocolState(store, Clock())
    assert state.raise_fence(7) == 7
    assert state.raise_fence(2) == 7
    with pytest.raises(StaleFence):
        state.begin(INIT_SCOPE, 6, "a1")


def test_connect_fences_are_kept_per_storage_domain(store: StateStore) -> None:
    state = ProtocolState(store, Clock())
    state.finish(state.begin(connect_scope("sd-1"), 8, "c1")[0], ok=True)
    assert state.begin(connect_scope("sd-2"), 1, "c2")[1]  # another domain's counter
    assert state.highest(connect_scope("sd-1")) == 8 and state.highest() == 0


def test_status_body_says_running_then_done() -> None:
    state = ProtocolState(MemoryStore(), Clock())
    record, _ = state.begin(INIT_SCOPE, 2, "a1")
    running = state.lookup(INIT_SCOPE, "a1")
    assert running is not None and running.status_body()["status"] == "running"
    assert running.status_body()["ended_at"] is None
    state.finish(record, ok=True)
    done = state.lookup(INIT_SCOPE, "a1")
    assert done is not None
    body = done.status_body()
    assert (body["status"], body["ok"], body["fence"], body["activation_id"]) == ("done", True, 2, "a1")
    assert body["started_at"].endswith("Z") and body["ended_at"].endswith("Z")


def test_the_fence_is_on_disk_before_begin_returns(tmp_path: Path) -> None:
    state = ProtocolState(_disk(tmp_path), Clock())
    state.begin(INIT_SCOPE, 12, "a1")
    on_disk = json.loads((tmp_path / "state.json").read_text())
    assert on_disk["fences"] == {"init": 12}
    assert on_disk["records"][0]["activation_id"] == "a1" and on_disk["records"][0]["ended_at"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary file left behind


def test_a_restarted_state_refuses_old_fences_and_answers_for_recent_inits(tmp_path: Path) -> None:
    first = ProtocolState(_disk(tmp_path), Clock())
    first.finish(first.begin(INIT_SCOPE, 5, "a1")[0], ok=True)
    first.raise_fence(6)
    running, _ = first.begin(INIT_SCOPE, 7, "a2")  # the process "dies" with a2 running

    second = ProtocolState(_disk(tmp_path), Clock())
    with pytest.raises(StaleFence):
        second.begin(INIT_SCOPE, 6, "a3")
    done = second.lookup(INIT_SCOPE, "a1")
    assert done is not None and done.ok is True
    interrupted = second.lookup(INIT_SCOPE, "a2")
    assert interrupted is not None and not interrupted.is_running
    assert (interrupted.ok, interrupted.reason, interrupted.detail) == (False, "general", INTERRUPTED)
    assert second.running() is None


def test_ended_results_are_bounded_and_the_oldest_go_first(store: StateStore) -> None:
    state = ProtocolState(store, Clock(), keep_results=3)
    for n in range(6):
        state.finish(state.begin(INIT_SCOPE, n, f"a{n}")[0], ok=True)
    assert [state.lookup(INIT_SCOPE, f"a{n}") is not None for n in range(6)] == [False] * 3 + [True] * 3
    assert len(store.load()["records"]) == 3


def _disk(directory: Path) -> DiskStore:
    """A disk store with a state (created once, as ``--new-state`` does on first install)."""
    store = DiskStore(directory)
    if not store.path.exists():
        store.create()
    return store


def test_a_state_file_that_is_not_json_stops_the_agent(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text('{"fences": {"init": 4')
    with pytest.raises(InvalidInput) as caught:
        ProtocolState(_disk(tmp_path), Clock())
    assert caught.value.field == "state_dir" and "highest fence" in caught.value.message
