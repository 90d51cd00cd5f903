"""A batch's two reads on the in-memory fake and on real PostgreSQL: a few columns of every host
to evaluate (``batch_changed``), then the whole rows of those evaluated again (``batch_rows``).

The few columns must say what the whole rows say: a steady host is judged on them alone.
"""

from __future__ import annotations

from datetime import timedelta

from autorecovery.ports.rows import BatchWindow
from models.changes import report_digest
from tests.contract.conftest import Backend
from tests.contract.helpers import T0, queue, report, seed, tx

NOW = T0 + timedelta(minutes=5)


def window(tick_id: str = "t-none") -> BatchWindow:
    return BatchWindow(
        now=NOW,
        pushed_within_s=10.0,
        max_clock_skew_s=5.0,
        max_report_age_s=30.0,
        margin_s=10.0,
        tick_id=tick_id,
    )


def test_the_few_columns_say_what_the_whole_rows_say(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3", "h4")
    with tx(backend) as conn:
        backend.repos.hosts.upsert_reports(conn, [report("h1", NOW, source="push")], NOW)
        backend.repos.hosts.upsert_reports(conn, [report("h2", NOW - timedelta(seconds=3))], NOW)
        backend.repos.hosts.set_status(conn, "h3", "maintenance", "general", "by hand", NOW)
    with tx(backend) as conn:
        before = {h.id: h.host_key for h in backend.repos.hosts.batch_changed(conn, "", None, window())()[0]}
    queue(backend, [("a-4", "h4")], NOW)  # an activation in flight is part of the host's key
    with tx(backend) as conn:
        light, settled = backend.repos.hosts.batch_changed(conn, "", None, window())()
        whole = backend.repos.hosts.batch_rows(conn, [h.id for h in light])()
    assert settled == []  # no tick context kept: nothing can be settled
    assert [h.id for h in light] == [row.host.id for row in whole] == ["h1", "h2", "h3", "h4"]
    for few, row in zip(light, whole, strict=True):
        host, stored, state = row
        assert (few.cluster_id, few.status, few.agent_url) == (host.cluster_id, host.status, host.agent_url)
        assert few.report_source == (stored.source if stored else None)
        assert few.report_reported_at == (stored.reported_at if stored else None)
        assert few.report_digest == state["report_digest"]
        assert few.host_key == state["host_key"] is not None
        assert (few.eval_key, few.eval_until, few.eval_code, few.eval_silent) == (
            state["eval_key"],
            state["eval_until"],
            state["eval_code"],
            state["eval_silent"],
        )
    by_id = {h.id: h for h in light}
    assert by_id["h1"].report_source == "push" and by_id["h2"].report_source == "pull"
    assert by_id["h1"].report_digest == report_digest(report("h1", NOW, source="push"))
    assert by_id["h3"].report_reported_at is None and by_id["h3"].status == "maintenance"
    assert by_id["h4"].host_key != before["h4"] and by_id["h3"].host_key == before["h3"]


def test_the_whole_rows_are_only_the_hosts_asked_for(backend: Backend) -> None:
    seed(backend, "h1", "h2", "h3")
    with tx(backend) as conn:
        assert backend.repos.hosts.batch_rows(conn, [])() == []
        assert [row.host.id for row in backend.repos.hosts.batch_rows(conn, ["h3", "h1", "gone"])()] == [
            "h1",
            "h3",
        ]
