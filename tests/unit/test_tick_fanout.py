"""The tick as a coordinator and batches, over the memory store: one tick per interval, exact caps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import Repos
from autorecovery.services.monitoring import BatchSpec, MonitoringService, TickConfig
from models.domain import Cluster, HostStatus
from models.errors import BrokerUnavailable
from models.safety import CapPolicy
from tests.fakes import FixedClock, MemoryDatabase, RecordingEnqueuer, fake_container, memory_repos
from tests.fakes.ports import good_report
from tests.unit.test_reaper import TICK as REAPER_TICK

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
#: The reaper tests' tick, cut into batches of two, one tick per 10 s interval, a 30 s deadline.
CFG = replace(REAPER_TICK, batch_size=2, min_spacing_s=7.5, deadline_s=30.0)


@dataclass
class Queued:
    """A batch sender that keeps what it was sent (a broker nobody consumes yet)."""

    specs: list[BatchSpec] = field(default_factory=list)
    failing: bool = False

    def __call__(self, spec: BatchSpec) -> None:
        if self.failing:
            raise BrokerUnavailable("broker down")
        self.specs.append(spec)


@dataclass
class Fleet:
    db: MemoryDatabase
    repos: Repos
    agents: FakeAgentClient
    clock: FixedClock
    server: FixedClock
    enqueue: RecordingEnqueuer
    sent: Queued
    monitoring: MonitoringService

    def add(
        self, *host_ids: str, status: HostStatus = HostStatus.NON_OPERATIONAL, age_s: float = 60
    ) -> None:
        with self.db.transaction() as conn:
            self.repos.hosts.upsert_cluster(conn, CLUSTER)
            for h in host_ids:
                self.repos.hosts.insert_host(conn, h, CLUSTER.id, f"http://{h}", self.clock())
                since = self.clock() - timedelta(seconds=age_s)
                self.repos.hosts.set_status(conn, h, status.value, "kvm_not_running", "was down", since)
        for h in host_ids:
            self.agents.reports[h] = good_report(h, self.clock())

    def tick_row(self, tick_id: str) -> dict[str, Any]:
        with self.db.transaction() as conn:
            row = self.repos.ticks.get(conn, tick_id)
        assert row is not None
        return row

    def queued_hosts(self) -> list[str]:
        return sorted(self.enqueue.hosts())


def make(cfg: TickConfig = CFG) -> Fleet:
    server = FixedClock(T0)
    db = MemoryDatabase(clock=server)
    repos = memory_repos(db)
    agents = FakeAgentClient()
    clock = FixedClock(T0)
    enqueue = RecordingEnqueuer()
    sent = Queued()
    monitoring = fake_container(db, clock, agents, enqueue, tick=cfg, send_batch=sent).monitoring
    return Fleet(db, repos, agents, clock, server, enqueue, sent, monitoring)


def test_the_coordinator_sends_batches_and_the_last_one_closes_the_tick() -> None:
    f = make()
    f.add("h1", "h2", "h3", "h4", "h5")
    started = f.monitoring.tick("t1")
    assert started.skipped is None and started.batches == 3
    assert [(s.lo, s.hi) for s in f.sent.specs] == [("", "h3"), ("h3", "h5"), ("h5", None)]
    assert f.enqueue.calls == []  # nothing admitted before every batch reported
    # Batches run in any order, in any process; only the last one closes the tick.
    assert f.monitoring.run_batch(f.sent.specs[2]) is None
    assert f.monitoring.run_batch(f.sent.specs[0]) is None
    closed = f.monitoring.run_batch(f.sent.specs[1])
    assert closed is not None and closed.tick_id == "t1"
    assert closed.hosts == 5 and closed.batches == 3 and closed.enqueued == 5
    assert f.queued_hosts() == ["h1", "h2", "h3", "h4", "h5"]
    assert f.tick_row("t1")["state"] == "done"
    # A redelivered batch of a closed tick does nothing.
    assert f.monitoring.run_batch(f.sent.specs[1]) is None
    assert len(f.enqueue.calls) == 5


def test_caps_are_exact_fleet_wide_oldest_first_across_batches() -> None:
    f = make(replace(CFG, caps=CapPolicy(cluster_share=1.0, fleet_max=2)))
    f.add("h1", "h2", "h3", "h4", age_s=60)
    f.add("h5", "h6", age_s=600)  # waiting longest, in the last batch
    f.monitoring.tick("t1")
    for spec in f.sent.specs:
        f.monitoring.run_batch(spec)
    assert f.queued_hosts() == ["h5", "h6"]


def test_a_duplicate_tick_stops_and_sends_nothing() -> None:
    f = make()
    f.add("h1", "h2")
    f.monitoring.tick("t1")
    f.server.advance(3)  # a second beat, three seconds later
    dup = f.monitoring.tick("t2")
    assert dup.skipped is not None and dup.skipped.startswith("duplicate: tick t1")
    assert len(f.sent.specs) == 1


def test_a_running_tick_is_not_piled_on_and_is_taken_over_after_its_deadline() -> None:
    f = make()
    f.add("h1", "h2", "h3")
    f.monitoring.tick("t1")
    f.server.advance(10)
    busy = f.monitoring.tick("t2")
    assert busy.skipped is not None and "t1 is still running" in busy.skipped
    f.server.advance(25)  # t1 is now 35 s old: past the 30 s deadline
    took = f.monitoring.tick("t3")
    assert took.skipped is None and took.took_over == "t1"
    assert f.tick_row("t1")["state"] == "abandoned"
    # t1's late batches are refused: they neither write nor admit.
    assert [f.monitoring.run_batch(s) for s in f.sent.specs[:2]] == [None, None]
    assert f.enqueue.calls == []
    results = [f.monitoring.run_batch(s) for s in f.sent.specs[2:]]
    assert results[-1] is not None and results[-1].took_over == "t1"
    assert f.queued_hosts() == ["h1", "h2", "h3"]


def test_a_tick_whose_store_failed_mid_way_is_taken_over_after_its_deadline() -> None:
    f = make()
    f.add("h1", "h2", "h3")
    f.monitoring.tick("t1")
    f.db.unavailable = True  # PostgreSQL down: the batch fails and cannot even record that
    with pytest.raises(Exception, match="unavailable"):
        f.monitoring.run_batch(f.sent.specs[0])
    f.db.unavailable = False
    f.server.advance(31)
    nxt = f.monitoring.tick("t2")
    assert nxt.skipped is None and nxt.took_over == "t1"


def test_a_batch_that_raises_abandons_its_tick() -> None:
    f = make()
    f.add("h1", "h2", "h3")
    f.monitoring.tick("t1")

    def broken(*_: Any) -> Any:
        raise RuntimeError("agent client crashed")

    f.agents.pull_reports = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        f.monitoring.run_batch(f.sent.specs[0])
    row = f.tick_row("t1")
    assert row["state"] == "abandoned" and "agent client crashed" in row["detail"]
    f.server.advance(8)
    assert f.monitoring.tick("t2").skipped is None


def test_a_broker_failure_sending_batches_abandons_the_tick() -> None:
    f = make()
    f.add("h1", "h2", "h3")
    f.sent.failing = True
    got = f.monitoring.tick("t1")
    assert got.skipped is not None and "cannot send its batches" in got.skipped
    assert f.tick_row("t1")["state"] == "abandoned"


def test_inline_ticks_run_every_batch_here_and_return_the_whole_tick() -> None:
    f = make()
    f.monitoring.send_batch = None
    f.add("h1", "h2", "h3")
    result = f.monitoring.tick("t1")
    assert result.hosts == 3 and result.batches == 2 and result.enqueued == 3


def test_an_empty_fleet_closes_at_once() -> None:
    f = make()
    result = f.monitoring.tick("t1")
    assert result.hosts == 0 and result.batches == 0
    assert f.tick_row("t1")["state"] == "done"


def test_statements_per_batch_stay_constant_with_the_fleet_size() -> None:
    per_batch = []
    for n in (4, 40):
        f = make()
        f.monitoring.send_batch = None
        f.add(*[f"h{i:03d}" for i in range(n)], status=HostStatus.UP)
        result = f.monitoring.tick("t1")
        per_batch.append(result.statements / result.batches)
    # A constant per batch plus a constant per tick: the average falls towards the per-batch cost.
    assert per_batch[1] <= per_batch[0]


def test_a_late_batch_of_an_abandoned_tick_writes_no_status_change() -> None:
    f = make()
    f.add("h1", "h2", status=HostStatus.UP)
    f.monitoring.tick("t1")
    [spec] = f.sent.specs
    pull = f.agents.pull_reports

    def abandoned_meanwhile(targets: Any, now: Any) -> Any:
        # The batch pulls its reports past the deadline: the next tick takes over meanwhile.
        with f.db.transaction() as conn:
            assert f.repos.ticks.abandon(conn, "t1", "taken over")
        return pull(targets, now)

    f.agents.pull_reports = abandoned_meanwhile  # type: ignore[method-assign]
    f.agents.unavailable.update({"h1", "h2"})
    f.clock.advance(60)
    assert f.monitoring.run_batch(spec) is None
    with f.db.transaction() as conn:
        statuses = {h: f.repos.hosts.get_host(conn, h).host.status for h in ("h1", "h2")}  # type: ignore[union-attr]
    assert statuses == {"h1": HostStatus.UP, "h2": HostStatus.UP}
