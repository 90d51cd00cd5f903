"""Repair end to end: simulator over HTTP, real worker, PostgreSQL and Redis (SPEC §2 "Repair")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.integration.conftest import host_status, settle


def _audit(deps: Any, host_id: str, event: str) -> list[dict[str, Any]]:
    with deps.db.transaction() as conn:
        rows = conn.execute(
            "SELECT actor, reason FROM audit_log WHERE object_id = %s AND event = %s ORDER BY id",
            (host_id, event),
        ).fetchall()
    return [dict(r) for r in rows]


def test_stopped_pool_and_network_are_repaired_within_one_tick_plus_the_init(
    sim: Any, worker: Any, tick: Any, deps: Any
) -> None:
    client = sim(hosts=3)
    tick()
    settle(deps)
    cluster = client.fleet()["clusters"][0]
    client.reset_record()
    client.inject("pool_stopped", hosts=["h-0001"], target=cluster["storage_domains"][0])
    client.inject("net_stopped", hosts=["h-0002"], target=cluster["required_networks"][0])

    summary = tick()
    assert summary["transitions"] == 2
    assert summary["enqueued"] == 2
    settle(deps)
    for host_id in ("h-0001", "h-0002"):
        row = host_status(deps, host_id)
        assert row["status"] == "up", row
        assert [(a["actor"], a["reason"]) for a in _audit(deps, host_id, "activation_queued")][-1] == (
            "auto",
            "repair",
        )
    inits = client.inits()
    assert sorted(c["host_id"] for c in inits) == ["h-0001", "h-0002"]
    # What init repairs is not "a problem monitoring could see": the bar stays at 0.
    assert not any(c["faulted"] for c in inits)
    assert client.fleet()["hosts"][0]["faults"] == {}


def test_storage_gone_is_not_repaired_and_an_init_that_fails_is_charged(
    sim: Any, worker: Any, tick: Any, deps: Any
) -> None:
    client = sim(hosts=2)
    tick()
    settle(deps)
    sd = client.fleet()["clusters"][0]["storage_domains"][0]
    client.reset_record()
    # The pool is stopped and its storage gone: not repairable, never an init.
    client.inject("pool_stopped", hosts=["h-0001"], target=sd)
    client.inject("sd_down", hosts=["h-0001"], target=sd)
    for _ in range(3):
        tick()
        settle(deps)
    row = host_status(deps, "h-0001")
    assert (row["status"], row["reason"], row["last_decision"]) == (
        "non_operational",
        "storage_domain_unreachable",
        "has_problems",
    )
    assert client.inits("h-0001") == []
    # Storage back, pool still stopped, but the init fails: a charged failure, then backoff.
    client.clear(hosts=["h-0001"], fault="sd_down", target=sd)
    client.inject("init_fail", hosts=["h-0001"], reason="storage_domain_unreachable")
    tick()
    settle(deps)
    assert len(client.inits("h-0001")) == 1
    row = host_status(deps, "h-0001")
    assert row["status"] == "non_operational"
    assert [a["reason"] for a in _audit(deps, "h-0001", "backoff")] == ["1 failure(s) in a row"]
    assert row["failures"] == 1 and row["next_attempt_at"] is not None
    # No new init before the backoff ends (a loaded machine may tick after it has ended).
    tick()
    settle(deps)
    calls = client.inits("h-0001")
    if len(calls) > 1:
        assert datetime.fromisoformat(calls[1]["started_at"]) >= row["next_attempt_at"]
    else:
        assert host_status(deps, "h-0001")["last_decision"] == "backoff"
