"""One tick over simulated hosts and misbehaving agents: each bad agent hurts only its own host.

The misbehaving agents (deep JSON, 200 MB, a gzip bomb, a drip, a redirect to another local
port, HTML, invalid UTF-8, another host's id, a date in the future) are registered in the same
cluster as a simulated fleet; a real Celery worker with two prefork processes runs the ticks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from autorecovery.services.fleet import HostSpec
from tests.integration.conftest import host_status
from tests.support.misbehaving import MisbehavingAgents
from tests.support.processes import Proc

#: The bound on any worker process's peak resident memory (VmHWM). Before the limits, the 200 MB
#: body and the gzip bomb grew a worker to 600-700 MiB; a prefork child peaks near 85-90 MiB here.
MAX_WORKER_RSS_MIB = 160

#: kind -> what the stored observation's error (and the host's detail) says
BAD = {
    "deep": "bad report: body: is nested deeper than 32 levels",
    "huge": "bad report: body: is over the 1048576-byte limit",
    "bomb": "bad report: body: inflates past the 1048576-byte limit",
    "drip": "no complete answer within",
    "redirect": "redirects are not followed",
    "html": "bad report: body: cannot be decoded as UTF-8 JSON",
    "badutf8": "bad report: body: cannot be decoded as UTF-8 JSON",
    "longint": "bad report: ",
    "wrongid": "bad report: host_id: is 'someone-else'",
    "future": "ahead of the collector's clock",
}


@pytest.fixture
def misbehaving() -> Iterator[MisbehavingAgents]:
    elsewhere = MisbehavingAgents().start()  # the redirect's target: another local port, a good report
    server = MisbehavingAgents(redirect_to=lambda host: elsewhere.url("good", host) + "/report").start()
    yield server
    server.close()
    elsewhere.close()


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _reports(deps: Any) -> dict[str, dict[str, Any]]:
    with deps.db.transaction() as conn:
        rows = conn.execute("SELECT * FROM reports").fetchall()
    return {r["host_id"]: dict(r) for r in rows}


def test_one_tick_with_misbehaving_agents(
    sim: Callable[..., Any],
    misbehaving: MisbehavingAgents,
    fleet_service: Any,
    worker_with: Callable[..., Proc],
    tick: Callable[..., dict[str, Any]],
    deps: Any,
) -> None:
    client = sim(hosts=12, clusters=1)
    good = [h["id"] for h in client.fleet()["hosts"]]
    bad = {f"h-bad-{kind}": kind for kind in BAD}
    fleet_service.register_hosts(
        [HostSpec(host, "c-1", misbehaving.url(kind, host)) for host, kind in bad.items()], "test"
    )
    worker = worker_with(concurrency=2)
    children = worker.children()
    assert len(children) == 2

    started = datetime.now(UTC)
    first = tick(timeout_s=60)
    reports = _reports(deps)
    assert first["pulled"] == len(good) + len(bad), first
    for host in good:  # every good host assessed in that tick, from its own fresh report
        assert reports[host]["agent_reachable"] is True, reports[host]
        assert reports[host]["received_at"] >= started
    for host, kind in bad.items():
        row = reports[host]
        assert row["agent_reachable"] is False and BAD[kind] in (row["error"] or ""), (kind, row["error"])
        shown = host_status(deps, host)
        if kind in ("drip", "redirect"):  # HTTP failures: never heard from, so still unassigned
            assert (shown["status"], shown["last_decision"]) == ("unassigned", "agent_unreachable"), shown
            assert BAD[kind] in (shown["last_decision_detail"] or ""), shown
        else:  # garbage answers: heard from, and unusable
            assert shown["status"] == "non_responsive" and BAD[kind] in (shown["detail"] or ""), shown
            assert shown["reason"] == "bad_report", shown
    assert all(r["reported_at"] <= datetime.now(UTC) for r in reports.values())  # no future date stored

    peaks = {pid: _peak_rss_mib(pid) for pid in children}
    print(f"worker processes' peak RSS (MiB): {peaks}")
    assert max(peaks.values()) < MAX_WORKER_RSS_MIB, peaks

    second = tick(timeout_s=60)  # the next tick runs normally
    again = _reports(deps)
    assert second["pulled"] >= len(bad), second
    for host in bad:
        assert again[host]["received_at"] > reports[host]["received_at"]
        assert again[host]["agent_reachable"] is False
    assert all(again[h]["agent_reachable"] for h in good)
    assert max(_peak_rss_mib(pid) for pid in children) < MAX_WORKER_RSS_MIB
