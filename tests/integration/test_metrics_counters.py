"""Counters and histograms kept in PostgreSQL: scraped over HTTP, they never go down.

A real worker activates hosts from a simulator; the API (its own process) serves /metrics.
Deleting a host and pruning history remove rows, never counts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from autorecovery.services import utcnow
from autorecovery.services.retention import RetentionPolicy, RetentionService
from tests.integration.api_fixtures import ApiServer
from tests.integration.conftest import host_status, settle
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: ApiServer) -> Samples:
    """Every sample of /metrics, by name and labels."""
    with api.client("vic") as http:
        answer = http.get("/metrics")
    assert answer.status_code == 200, answer.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(answer.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def counters(samples: Samples) -> Samples:
    """Only the monotonic series: counters and histogram buckets, counts and sums."""
    monotonic = ("_total", "_bucket", "_count", "_sum")
    return {k: v for k, v in samples.items() if k[0].endswith(monotonic)}


def test_counters_only_go_up_across_activations_host_deletion_and_pruning(
    sim: Any, worker: Any, tick: Any, deps: Any, api: ApiServer
) -> None:
    start = scrape(api)
    client = sim(hosts=3)
    tick()
    settle(deps)
    up = scrape(api)
    ups = "autorecovery_activations_total"
    assert value(up, ups, trigger="auto", outcome="up") - value(start, ups, trigger="auto", outcome="up") == 3
    duration = "autorecovery_activation_duration_seconds_count"
    assert value(up, duration) - value(start, duration) == 3
    assert value(up, "autorecovery_hosts", cluster="c-1", status="up") == 3
    assert value(up, "autorecovery_activations_in_flight", cluster="c-1") == 0

    # A fault, seen, then cleared: the time from the first clean report to up is observed.
    client.inject("kvm_down", hosts=["h-0001"])
    tick()
    assert host_status(deps, "h-0001")["status"] == "non_operational"
    with api.client("vic") as http:
        shown = http.get("/api/v1/hosts/h-0001").json()
    assert shown["last_clean_at"] is not None and shown["held_by"] == []
    client.clear(hosts=["h-0001"])
    for _ in range(3):
        tick()
        settle(deps)
        if host_status(deps, "h-0001")["status"] == "up":
            break
    recovered = scrape(api)
    recovery = "autorecovery_recovery_seconds_count"
    assert value(recovered, recovery) - value(start, recovery) == 1
    assert 0 <= value(recovered, "autorecovery_recovery_seconds_sum") - value(
        start, "autorecovery_recovery_seconds_sum"
    ) < 30

    # An agent that stops answering is a pull error.
    client.inject("silent", hosts=["h-0003"])
    tick()
    silent = scrape(api)
    errors = sum(
        v - start.get(k, 0.0)
        for k, v in silent.items()
        if k[0] == "autorecovery_agent_pull_errors_total"
    )
    assert errors >= 1

    with api.client("alice") as http:
        assert http.delete("/api/v1/hosts/h-0002").status_code == 204
    deleted = scrape(api)
    assert value(deleted, "autorecovery_hosts", cluster="c-1", status="up") < 3

    far_future = RetentionService(deps.db, lambda: utcnow() + timedelta(days=3650), RetentionPolicy())
    assert far_future.prune()["rows"]["activations"] >= 2
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM activations WHERE state NOT IN ('queued', 'sending', 'sent')"
        ).fetchone()
    assert row is not None and row["n"] == 0
    pruned = scrape(api)

    before, after = counters(silent), counters(pruned)
    for key, seen in before.items():
        assert after.get(key, 0.0) >= seen, f"{key} went down: {seen} -> {after.get(key)}"
    up_label = {"trigger": "auto", "outcome": "up"}
    assert value(pruned, ups, **up_label) == value(recovered, ups, **up_label)



def test_the_prune_task_runs_on_a_worker_and_audits_one_summary(
    worker: Any, deps: Any, app_module: Any
) -> None:
    app_module.app.send_task("autorecovery.prune", queue="monitoring")

    def summaries() -> list[dict[str, Any]]:
        with deps.db.transaction() as conn:
            return conn.execute(
                "SELECT actor, details FROM audit_log WHERE object_type = 'retention' AND event = 'pruned'"
            ).fetchall()

    wait_for(lambda: len(summaries()) == 1, 30, "the pruning's audit summary")
    found = summaries()[0]
    assert found["actor"] == "auto"
    kinds = {"audit_log", "activations", "sd_activations", "ticks", "charges", "vm_runs"}
    assert set(found["details"]["rows"]) == kinds
