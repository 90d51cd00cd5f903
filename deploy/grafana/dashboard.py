"""Write deploy/grafana/autorecovery.json: the dashboard, as data, with its rules kept in one place.

Run ``python deploy/grafana/dashboard.py`` after editing; tests/unit/test_dashboard.py fails while
the committed JSON differs, and checks every panel: a legend, thresholds that rise, and queries
that never sum one series across API replicas (each replica reports the whole fleet, so queries
take ``max without (instance, pod)`` first).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGET = Path(__file__).resolve().parent / "autorecovery.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
#: One series per fleet-wide value, whatever the number of API replicas scraped.
ONE = "max without (instance, pod)"
CLUSTER = 'cluster=~"$cluster"'

GREEN, YELLOW, ORANGE, RED, BLUE = "green", "yellow", "orange", "red", "blue"


def steps(*pairs: tuple[float | None, str]) -> dict[str, Any]:
    """Absolute thresholds: (from value, colour), the first from null (the base)."""
    return {"mode": "absolute", "steps": [{"value": v, "color": c} for v, c in pairs]}


def target(ref: str, expr: str, legend: str) -> dict[str, Any]:
    return {"refId": ref, "expr": expr, "legendFormat": legend, "datasource": DS}


def quantile(q: float, buckets: str) -> str:
    """The ``q`` quantile of a histogram over 30 minutes, one series of buckets per fleet."""
    return f"histogram_quantile({q}, sum by (le) ({ONE} (rate({buckets}[30m]))))"


def stat(
    title: str,
    expr: str,
    legend: str,
    unit: str,
    thresholds: dict[str, Any],
    mappings: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "targets": [target("A", expr, legend)],
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": thresholds,
                "mappings": mappings or [],
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "none",
            "textMode": "value_and_name",
            "legend": {"showLegend": True, "displayMode": "list", "placement": "bottom"},
        },
    }


def series(
    title: str,
    targets: list[dict[str, Any]],
    unit: str,
    thresholds: dict[str, Any],
    description: str = "",
    mappings: list[dict[str, Any]] | None = None,
    kind: str = "timeseries",
) -> dict[str, Any]:
    custom: dict[str, Any] = {"thresholdsStyle": {"mode": "line"}} if kind == "timeseries" else {}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "targets": targets,
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": thresholds,
                "mappings": mappings or [],
                "custom": custom,
                "color": {"mode": "palette-classic" if kind == "timeseries" else "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "showLegend": True,
                "displayMode": "table",
                "placement": "right",
                "calcs": ["lastNotNull", "max"],
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


GATE_STATES = [
    {"type": "value", "options": {"0": {"text": "open", "color": GREEN, "index": 0}}},
    {"type": "value", "options": {"1": {"text": "CLOSED", "color": RED, "index": 1}}},
]


def panels() -> list[dict[str, Any]]:
    """Every panel, in reading order (row by row)."""
    return [
        stat(
            "Hosts up",
            f'sum({ONE} (autorecovery_hosts{{status="up",{CLUSTER}}}))',
            "up",
            "short",
            steps((None, BLUE)),
            description="Hosts up in the selected clusters.",
        ),
        stat(
            "Hosts out of service",
            f'sum({ONE} (autorecovery_hosts{{status!~"up|maintenance|unassigned",{CLUSTER}}}))',
            "out of service",
            "short",
            steps((None, GREEN), (1, YELLOW), (10, RED)),
            description="non_operational, non_responsive, error, initializing "
            "(maintenance and unassigned not counted).",
        ),
        stat(
            "Longest down",
            f"max({ONE} (autorecovery_cluster_longest_down_seconds{{{CLUSTER}}}))",
            "longest down",
            "s",
            steps((None, GREEN), (3600, YELLOW), (6 * 3600, RED)),
            description="The longest any host of the selected clusters has been out of service "
            "(alert at 6 h).",
        ),
        stat(
            "Seconds since last tick",
            f"time() - max({ONE} (autorecovery_tick_last_finished_timestamp_seconds))",
            "since last tick",
            "s",
            steps((None, GREEN), (30, YELLOW), (60, RED)),
        ),
        stat(
            "Seconds since beat seen",
            f"time() - max({ONE} (autorecovery_beat_last_seen_timestamp_seconds))",
            "since beat seen",
            "s",
            steps((None, GREEN), (30, YELLOW), (60, RED)),
        ),
        stat(
            "Observer gate",
            f"max by (reason) ({ONE} (autorecovery_observer_gated))",
            "{{reason}}",
            "none",
            steps((None, GREEN), (1, RED)),
            mappings=GATE_STATES,
            description="open, or CLOSED with the gate's reason "
            "(monitoring_stale, quiet_period, redis_unavailable).",
        ),
        series(
            "Hosts out of service by cluster and status",
            [
                target(
                    "A",
                    f"sum by (cluster, status) "
                    f'({ONE} (autorecovery_hosts{{status!~"up|unassigned",{CLUSTER}}}))',
                    "{{cluster}} {{status}}",
                )
            ],
            "short",
            steps((None, GREEN), (10, RED)),
        ),
        series(
            "Holds by kind (up hosts included)",
            [target("A", f"sum by (hold) ({ONE} (autorecovery_hosts_held))", "{{hold}}")],
            "short",
            steps((None, GREEN), (1, YELLOW)),
            description="Hosts carrying each hold whatever their status: "
            "a quarantine on an up host stops its next recovery.",
        ),
        series(
            "Activations ended, by outcome (per 5 min)",
            [
                target(
                    "A",
                    f"sum by (outcome) ({ONE} (increase(autorecovery_activations_total[5m])))",
                    "{{outcome}}",
                )
            ],
            "short",
            steps((None, GREEN)),
        ),
        series(
            "Fault cleared to up (p50, p90)",
            [
                target(
                    "A",
                    quantile(0.5, "autorecovery_recovery_seconds_bucket"),
                    "p50",
                ),
                target(
                    "B",
                    quantile(0.9, "autorecovery_recovery_seconds_bucket"),
                    "p90",
                ),
            ],
            "s",
            steps((None, GREEN), (120, YELLOW), (300, RED)),
        ),
        series(
            "Activation duration (p50, p90)",
            [
                target(
                    "A",
                    quantile(0.5, "autorecovery_activation_duration_seconds_bucket"),
                    "p50",
                ),
                target(
                    "B",
                    quantile(0.9, "autorecovery_activation_duration_seconds_bucket"),
                    "p90",
                ),
            ],
            "s",
            steps((None, GREEN), (20, YELLOW), (30, RED)),
        ),
        series(
            "Report pull errors by kind (per second)",
            [
                target(
                    "A", f"sum by (kind) ({ONE} (rate(autorecovery_agent_pull_errors_total[5m])))", "{{kind}}"
                )
            ],
            "reqps",
            steps((None, GREEN), (0.05, YELLOW)),
            description="unreachable and timeout: hosts that are off (expected); "
            "http_status and bad_report: agents that answer wrongly (a 401 is a wrong token).",
        ),
        series(
            "Broker queue depth",
            [target("A", f"max by (queue) ({ONE} (autorecovery_broker_queue_depth))", "{{queue}}")],
            "short",
            steps((None, GREEN), (100, RED)),
        ),
        series(
            "Tick duration",
            [target("A", f"max({ONE} (autorecovery_tick_duration_seconds))", "tick")],
            "s",
            steps((None, GREEN), (5, YELLOW), (10, RED)),
            description="Over one tick interval (10 s by default), ticks queue behind each other.",
        ),
        series(
            "Activations in flight by cluster",
            [
                target(
                    "A",
                    f"sum by (cluster) ({ONE} (autorecovery_activations_in_flight{{{CLUSTER}}}))",
                    "{{cluster}}",
                )
            ],
            "short",
            steps((None, GREEN)),
        ),
        series(
            "Incidents, inactive storage domains, pauses",
            [
                target("A", f"max({ONE} (autorecovery_incidents_open))", "incidents open"),
                target(
                    "B",
                    f'max({ONE} (autorecovery_storage_domains{{status="inactive"}}))',
                    "storage domains inactive",
                ),
                target("C", f"max by (scope) ({ONE} (autorecovery_pauses))", "paused: {{scope}}"),
            ],
            "short",
            steps((None, GREEN), (1, RED)),
        ),
        series(
            "Storage domain activations (per 5 min)",
            [
                target(
                    "A",
                    f"sum by (outcome) ({ONE} (increase(autorecovery_storage_domain_activations_total[5m])))",
                    "{{outcome}}",
                )
            ],
            "short",
            steps((None, GREEN)),
        ),
    ]


def layout(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Number the panels, give them the data source and place them: stats 4 wide, graphs 12."""
    x = y = 0
    row_h = 0
    for n, panel in enumerate(found, start=1):
        w, h = (4, 4) if panel["type"] == "stat" else (12, 8)
        if x + w > 24:
            x, y = 0, y + row_h
        panel.update(id=n, datasource=DS, gridPos={"x": x, "y": y, "w": w, "h": h})
        for t in panel["targets"]:
            t["datasource"] = DS
        x += w
        row_h = h
    return found


def dashboard() -> dict[str, Any]:
    """The whole dashboard."""
    return {
        "title": "autorecovery",
        "uid": "autorecovery",
        "description": "Fleet status, holds, activations, recovery times, beat and tick liveness.",
        "tags": ["autorecovery"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 2,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
                {
                    "name": "cluster",
                    "type": "query",
                    "label": "Cluster",
                    "datasource": DS,
                    "query": {"query": "label_values(autorecovery_hosts, cluster)", "refId": "cluster"},
                    "definition": "label_values(autorecovery_hosts, cluster)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"text": "All", "value": "$__all"},
                    "sort": 1,
                },
            ]
        },
        "annotations": {"list": []},
        "panels": layout(panels()),
    }


def render() -> str:
    """The dashboard's JSON text."""
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    TARGET.write_text(render(), encoding="utf-8")
    print(f"wrote {TARGET}")
