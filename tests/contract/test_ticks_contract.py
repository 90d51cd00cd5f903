"""The ticks repository on the in-memory fake and on real PostgreSQL: claims, batches, closing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from autorecovery.ports.rows import PushedCut
from tests.contract.conftest import Backend
from tests.contract.helpers import T0, backdate, report, seed, tx

SPACING = {"min_spacing_s": 0.0, "deadline_s": 60.0}


def claim(backend: Backend, tick_id: str, batch_size: int = 2, **kw: Any) -> Any:
    with tx(backend) as conn:
        return backend.repos.ticks.claim(conn, tick_id, batch_size=batch_size, **{**SPACING, **kw})


def finish(backend: Backend, tick_id: str, idx: int, hosts: int = 1) -> Any:
    with tx(backend) as conn:
        return backend.repos.ticks.finish_batch(
            conn, tick_id, idx, {"hosts": hosts}, [{"host_id": f"h{idx}"}]
        )


def state(backend: Backend, tick_id: str) -> str:
    with tx(backend) as conn:
        row = backend.repos.ticks.get(conn, tick_id)
    assert row is not None
    return str(row["state"])


def test_a_claim_cuts_the_fleet_into_batches_by_id(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3", "h4", "h5")
    got = claim(backend, "t1", batch_size=2)
    assert got.tick_id == "t1" and got.refused is None
    assert got.bounds == ("h1", "h3", "h5")
    with tx(backend) as conn:
        assert backend.repos.hosts.batch_between(conn, "", "h3")[-1][0].id == "h2"
        assert [h.id for h, _, _ in backend.repos.hosts.batch_between(conn, "h3", "h5")] == ["h3", "h4"]
        assert [h.id for h, _, _ in backend.repos.hosts.batch_between(conn, "h5", None)] == ["h5"]


def test_hosts_that_pushed_share_bigger_batches(backend: Backend) -> None:
    """Two hosts to pull, or four that pushed within the window, or one of each and two more."""
    seed(backend, "h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8")
    now = T0 + timedelta(hours=1)
    window = PushedCut(size=4, after=now - timedelta(seconds=10), before=now + timedelta(seconds=5))
    with tx(backend) as conn:
        pushed = [report(h, now, source="push") for h in ("h2", "h3", "h4", "h5", "h7")]
        backend.repos.hosts.upsert_reports(conn, pushed, now)
        # Pushed before the window (pulled this tick), and pulled: both weigh a whole host.
        early = report("h6", now - timedelta(seconds=11), source="push")
        backend.repos.hosts.upsert_reports(conn, [early], now)
        backend.repos.hosts.upsert_reports(conn, [report("h8", now, source="pull")], now)
    got = claim(backend, "t1", batch_size=2, pushed=window)
    # h1 (pull) h2 h3 (pushed) | h4 h5 (pushed) h6 (pull) | h7 (pushed) h8 (pull)
    assert got.bounds == ("h1", "h4", "h7")
    with tx(backend) as conn:
        backend.repos.ticks.abandon(conn, "t1", "test")
    # Without a window, or with pushed batches no bigger, the cut is by count alone.
    assert claim(backend, "t2", batch_size=2).bounds == ("h1", "h3", "h5", "h7")
    with tx(backend) as conn:
        backend.repos.ticks.abandon(conn, "t2", "test")
    same = PushedCut(size=2, after=window.after, before=window.before)
    assert claim(backend, "t3", batch_size=2, pushed=same).bounds == ("h1", "h3", "h5", "h7")


def test_a_tick_claimed_too_soon_after_another_is_a_duplicate(backend: Backend) -> None:
    assert claim(backend, "t1", min_spacing_s=30.0).tick_id == "t1"
    second = claim(backend, "t2", min_spacing_s=30.0)
    assert second.tick_id is None and second.refused is not None
    assert second.refused.startswith("duplicate: tick t1")


def test_a_running_tick_is_not_piled_on_until_its_deadline(backend: Backend) -> None:
    seed(backend, "h1")
    claim(backend, "t1")
    refused = claim(backend, "t2", deadline_s=30.0)
    assert refused.tick_id is None and "t1 is still running" in str(refused.refused)
    time.sleep(0.3)
    took = claim(backend, "t3", deadline_s=0.2)
    assert took.tick_id == "t3" and took.took_over == "t1"
    assert state(backend, "t1") == "abandoned"
    with tx(backend) as conn:
        assert backend.repos.ticks.batch_refusal(conn, "t1", 0) == "tick t1 is abandoned"


def test_the_batch_that_completes_a_tick_closes_it_once(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3")
    claim(backend, "t1", batch_size=1)
    assert finish(backend, "t1", 0).closes is False
    assert finish(backend, "t1", 0).recorded is False  # a redelivered batch changes nothing
    assert finish(backend, "t1", 2).closes is False
    last = finish(backend, "t1", 1)
    assert last.recorded and last.closes
    assert state(backend, "t1") == "closing"
    with tx(backend) as conn:
        assert backend.repos.ticks.batch_refusal(conn, "t1", 1) == "batch 1 of tick t1 already ran"
        results = backend.repos.ticks.batch_results(conn, "t1")
        assert [r["idx"] for r in results] == [0, 1, 2]
        assert results[1]["candidates"] == [{"host_id": "h1"}]
        assert backend.repos.ticks.close(conn, "t1", {"hosts": 3}) is not None
        assert backend.repos.ticks.close(conn, "t1", {"hosts": 3}) is None
    assert state(backend, "t1") == "done"


def test_an_abandoned_tick_records_no_late_batch(backend: Backend) -> None:
    seed(backend, "h1", "h2")
    claim(backend, "t1", batch_size=1)
    with tx(backend) as conn:
        assert backend.repos.ticks.abandon(conn, "t1", "a batch failed")
        assert not backend.repos.ticks.abandon(conn, "t1", "again")
    assert finish(backend, "t1", 0).recorded is False
    assert claim(backend, "t2").tick_id == "t2"  # no waiting for the deadline


def test_an_empty_fleet_closes_without_batches(backend: Backend) -> None:
    got = claim(backend, "t1")
    assert got.bounds == ()
    with tx(backend) as conn:
        assert backend.repos.ticks.start_closing(conn, "t1")
        assert backend.repos.ticks.close(conn, "t1", {}) is not None


@pytest.mark.integration
def test_a_finished_tick_is_kept_for_its_retention_not_an_hour(backend: Backend) -> None:
    with tx(backend) as conn:
        backend.repos.ticks.claim(conn, "old", batch_size=10, min_spacing_s=0, deadline_s=60)
        assert backend.repos.ticks.start_closing(conn, "old")
        backend.repos.ticks.close(conn, "old", {})
    backdate(backend, "ticks", "old", 2 * 3600)
    with tx(backend) as conn:
        assert backend.repos.ticks.claim(conn, "new", batch_size=10, min_spacing_s=0, deadline_s=60).tick_id
        assert backend.repos.ticks.get(conn, "old") is not None  # pruned after 30 days, by retention
        hour_ago = datetime.now(UTC) - timedelta(hours=1)
        assert backend.repos.retention.count_older(conn, "ticks", hour_ago) == 1
        assert backend.repos.retention.delete_batch(conn, "ticks", hour_ago, 10) == 1
        assert backend.repos.ticks.get(conn, "old") is None


def test_batches_finishing_at_once_close_their_tick_exactly_once(request: pytest.FixtureRequest) -> None:
    """On PostgreSQL, 16 batches finishing in 8 threads at once: exactly one of them closes."""
    from autorecovery.adapters.store import PG_REPOS, Database

    db = Database(request.getfixturevalue("pg_servers").database_url, max_size=8)
    db.open(wait_s=10.0)
    request.addfinalizer(db.close)
    backend = Backend("postgres", db, PG_REPOS)
    with tx(backend) as conn:
        conn.execute("TRUNCATE hosts, clusters, ticks CASCADE")
    seed(backend, *[f"h{i:02d}" for i in range(16)])
    claim(backend, "t-race", batch_size=1)
    closes: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def finisher(indexes: list[int]) -> None:
        start.wait()
        for idx in indexes:
            done = finish(backend, "t-race", idx)
            with lock:
                closes.append(done.closes)

    threads = [threading.Thread(target=finisher, args=([i, i + 8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(closes) == 16 and closes.count(True) == 1
    assert state(backend, "t-race") == "closing"
