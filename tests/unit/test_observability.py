"""Alert rules and the Grafana dashboard: every PromQL expression parses (promql-parser) and names
only metrics the product exports, read from a scrape of the real collector with data in it.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from api.metric_families import COUNTERS, HISTOGRAMS
from api.metrics import FleetCollector

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
DASHBOARD = DEPLOY / "grafana" / "autorecovery.json"


def _scrape() -> str:
    """The collector's text output with a value in every family."""
    fleet = {
        "hosts": [{"cluster": "c-1", "status": "up", "n": 3}],
        "counters": [
            {"name": name, "labels": dict.fromkeys(labels, "x"), "value": 1.0}
            for name, (_, labels) in COUNTERS.items()
        ],
        "histograms": {name: {"buckets": [(1.0, 1), (math.inf, 1)], "sum": 0.5} for name in HISTOGRAMS},
    }
    safety = {
        "gate": "quiet_period: waiting", "silent_hosts": 0, "observed_hosts": 3,
        "last_full_tick_at": datetime(2026, 1, 1, tzinfo=UTC), "pauses": [], "quarantined": 0,
        "in_backoff": 0, "capped": 0, "incidents_open": 0, "in_flight": {"c-1": 0},
        "held": [{"hold": "quarantine", "status": "up", "n": 1, "examples": []}],
        "down_longest": {"c-1": (3600.0, 1)},
    }
    storage = {"hosts_in_error": 0, "charges_recent": 0, "storage_domains": {"active": 1}, "sd_in_flight": 0}
    tick = {"duration_s": 0.1, "finished_at": 1.7e9, "hosts": 3, "enqueued": 0}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        FleetCollector(
            lambda: fleet, lambda: tick, lambda: safety, lambda: storage,
            beat_seen=lambda: 1.7e9, queues=lambda: {"monitoring": 0, "activation": 0},
        )
    )
    return generate_latest(registry).decode()


EXPORTED = {s.name for f in text_string_to_metric_families(_scrape()) for s in f.samples}


def _names(expr: str) -> list[str]:
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.append(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _panel_exprs() -> list[tuple[str, str]]:
    doc = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in doc["panels"] for t in p["targets"]]


def test_the_scrape_has_the_new_families() -> None:
    for name in [
        "autorecovery_activations_total", "autorecovery_agent_pull_errors_total",
        "autorecovery_recovery_seconds_bucket", "autorecovery_activation_duration_seconds_count",
        "autorecovery_beat_last_seen_timestamp_seconds", "autorecovery_broker_queue_depth",
        "autorecovery_build_info", "autorecovery_hosts",
    ]:
        assert name in EXPORTED, name


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_alert_parses_and_names_exported_metrics(rule: dict[str, Any]) -> None:
    names = _names(rule["expr"])
    assert names, "an alert on no metric"
    assert set(names) <= EXPORTED, set(names) - EXPORTED
    assert rule["labels"]["severity"] in {"critical", "warning"}
    assert rule["annotations"]["summary"]


def test_alerts_cover_what_an_operator_must_know() -> None:
    names = {n for rule in _rules() for n in _names(rule["expr"])}
    for needed in [
        "autorecovery_hosts", "autorecovery_tick_last_finished_timestamp_seconds",
        "autorecovery_observer_gated", "autorecovery_activations_total", "autorecovery_hosts_held",
        "autorecovery_cluster_longest_down_seconds",
        "autorecovery_incidents_open", "autorecovery_metrics_source_up",
        "autorecovery_beat_last_seen_timestamp_seconds",
    ]:
        assert needed in names, needed


@pytest.mark.parametrize("title,expr", _panel_exprs(), ids=lambda v: str(v)[:40])
def test_dashboard_queries_parse_and_name_exported_metrics(title: str, expr: str) -> None:
    names = _names(expr)
    assert names and set(names) <= EXPORTED, (title, set(names) - EXPORTED)


def test_an_unknown_metric_or_a_broken_expression_is_caught() -> None:
    assert not set(_names("rate(autorecovery_activation_total[5m])")) <= EXPORTED
    with pytest.raises(ValueError):
        promql_parser.parse("sum(autorecovery_hosts")
