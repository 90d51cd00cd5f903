"""Prometheus metric families built from what one scrape read; no I/O here.

Counters and histograms come from the rows that triggers keep in PostgreSQL (migration 0006),
so they only go up, whichever API replica serves the scrape; everything else is a gauge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from models.domain import DomainStatus
from models.policy import Skip
from models.safety import FLEET, HOST_HOLDS

#: Counter families kept in PostgreSQL: name (without _total) -> (help, label names).
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "autorecovery_activations": (
        "Host activations closed, by trigger and outcome (never goes down)",
        ("trigger", "outcome"),
    ),
    "autorecovery_storage_domain_activations": (
        "Storage domain activations closed, by trigger and outcome (never goes down)",
        ("trigger", "outcome"),
    ),
    "autorecovery_agent_pull_errors": (
        "Report pulls that failed, by kind: timeout, unreachable, http_status, bad_report",
        ("kind",),
    ),
}

#: Histograms kept in PostgreSQL: name -> help.
HISTOGRAMS: dict[str, str] = {
    "autorecovery_activation_duration_seconds": "Time from an activation's start to its end",
    "autorecovery_storage_domain_activation_duration_seconds": (
        "Time from a storage domain activation's start to its end"
    ),
    "autorecovery_recovery_seconds": (
        "Time from a host's first clean report after it went out (fault cleared) to up"
    ),
}


def gauge(name: str, text: str, value: object) -> GaugeMetricFamily:
    """A gauge without labels; a value that is not a number reads 0."""
    return GaugeMetricFamily(name, text, value=float(value) if isinstance(value, int | float) else 0.0)


def gate_code(gate: str | None) -> str:
    """The reason code of an observer gate (the text before ':'), or '' when there is none."""
    return "" if not gate else gate.split(":", 1)[0].strip()


def fleet_families(found: dict[str, Any]) -> Iterator[Metric]:
    """Hosts by cluster and status, the counters and the histograms."""
    hosts = GaugeMetricFamily(
        "autorecovery_hosts", "Hosts by cluster and status", labels=["cluster", "status"]
    )
    for row in found.get("hosts") or ():
        hosts.add_metric([row["cluster"], row["status"]], float(row["n"]))
    yield hosts
    families = {
        name: CounterMetricFamily(name, text, labels=list(labels))
        for name, (text, labels) in COUNTERS.items()
    }
    lock_skips = 0.0
    for row in found.get("counters") or ():
        family = families.get(row["name"])
        if family is None:
            continue
        labels = row["labels"] or {}
        family.add_metric([str(labels.get(k, "")) for k in COUNTERS[row["name"]][1]], float(row["value"]))
        if row["name"] == "autorecovery_activations" and labels.get("outcome") == Skip.LOCK_BUSY.value:
            lock_skips += float(row["value"])
    yield from families.values()
    yield CounterMetricFamily(
        "autorecovery_lock_skips",
        "Activations skipped because another held the host's lock",
        value=lock_skips,
    )
    histograms = found.get("histograms") or {}
    for name, text in HISTOGRAMS.items():
        data = histograms.get(name) or {"buckets": [(math.inf, 0)], "sum": 0.0}
        buckets = [("+Inf" if math.isinf(le) else repr(le), float(n)) for le, n in data["buckets"]]
        yield HistogramMetricFamily(name, text, buckets=buckets, sum_value=float(data["sum"]))


def safety_families(found: dict[str, Any]) -> Iterator[Metric]:
    """The observer's gate, pauses, holds, incidents and activations in flight per cluster."""
    gate = found.get("gate")
    gated = GaugeMetricFamily(
        "autorecovery_observer_gated",
        "1 while the observer holds every automatic activation (as of the last full tick); "
        "reason: the gate's code, e.g. monitoring_stale, quiet_period, redis_unavailable",
        labels=["reason"],
    )
    gated.add_metric([gate_code(gate)], 1.0 if gate else 0.0)
    yield gated
    yield gauge(
        "autorecovery_observer_silent_hosts",
        "Hosts without fresh monitoring data at the last full tick",
        found.get("silent_hosts"),
    )
    yield gauge(
        "autorecovery_observer_observed_hosts",
        "Hosts monitored at the last full tick (maintenance excluded)",
        found.get("observed_hosts"),
    )
    last = found.get("last_full_tick_at")
    if isinstance(last, datetime):
        yield gauge(
            "autorecovery_observer_last_full_tick_timestamp_seconds",
            "When the last full tick ran (Unix time)",
            last.timestamp(),
        )
    pauses = GaugeMetricFamily(
        "autorecovery_pauses",
        "1 for each pause in force: scope fleet (always reported) or a cluster id",
        labels=["scope"],
    )
    scopes = set(found.get("pauses") or ())
    for scope in sorted(scopes | {FLEET}):
        pauses.add_metric([scope], 1.0 if scope in scopes else 0.0)
    yield pauses
    for key, name, text in (
        ("quarantined", "autorecovery_hosts_quarantined", "Hosts in flap quarantine"),
        ("in_backoff", "autorecovery_hosts_in_backoff", "Hosts waiting out a backoff"),
        ("capped", "autorecovery_hosts_capped", "Hosts whose last decision was capped"),
        (
            "agent_fence_ahead",
            "autorecovery_hosts_agent_fence_ahead",
            "Hosts held because their agent claimed a fence the product never issued (security event)",
        ),
        ("incidents_open", "autorecovery_incidents_open", "Correlated-failure incidents still open"),
    ):
        yield gauge(name, text, found.get(key))
    yield from hold_families(found)
    in_flight = GaugeMetricFamily(
        "autorecovery_activations_in_flight",
        "Activations queued or running, by cluster",
        labels=["cluster"],
    )
    for cluster, n in sorted((found.get("in_flight") or {}).items()):
        in_flight.add_metric([cluster], float(n))
    yield in_flight


def hold_families(found: dict[str, Any]) -> Iterator[Metric]:
    """Hosts by the holds they carry (up hosts too), and hosts out of service for long."""
    held = GaugeMetricFamily(
        "autorecovery_hosts_held",
        "Hosts carrying a hold, whatever their status (an up host's quarantine stops its next "
        f"recovery): hold is one of {', '.join(HOST_HOLDS)}",
        labels=["hold", "status"],
    )
    for row in found.get("held") or ():
        held.add_metric([row["hold"], row["status"]], float(row["n"]))
    yield held
    longest = GaugeMetricFamily(
        "autorecovery_cluster_longest_down_seconds",
        "How long the cluster's longest-down host has been out of service (non_operational, "
        "non_responsive, error or initializing; maintenance and unassigned not counted); 0: none",
        labels=["cluster"],
    )
    down = GaugeMetricFamily(
        "autorecovery_cluster_hosts_down",
        "Hosts of the cluster out of service (non_operational, non_responsive, error, initializing)",
        labels=["cluster"],
    )
    for cluster, (seconds, n) in sorted((found.get("down_longest") or {}).items()):
        longest.add_metric([cluster], float(seconds))
        down.add_metric([cluster], float(n))
    yield longest
    yield down


def error_storage_families(found: dict[str, Any]) -> Iterator[Metric]:
    """Hosts in error, recent charges, storage domains by status and their activations in flight."""
    yield gauge(
        "autorecovery_hosts_in_error",
        "Hosts in error: VMs kept failing there and starting elsewhere",
        found.get("hosts_in_error"),
    )
    yield gauge(
        "autorecovery_charges_recent",
        "Charges (a VM failed on the host, then started on another) within the charge window",
        found.get("charges_recent"),
    )
    domains = GaugeMetricFamily(
        "autorecovery_storage_domains", "Storage domains by status", labels=["status"]
    )
    by_status: dict[str, int] = dict.fromkeys((s.value for s in DomainStatus), 0)
    by_status.update(found.get("storage_domains") or {})
    for status, n in sorted(by_status.items()):
        domains.add_metric([status], float(n))
    yield domains
    yield gauge(
        "autorecovery_storage_domain_activations_in_flight",
        "Storage domain activations queued or running",
        found.get("sd_in_flight"),
    )


def tick_families(tick: dict[str, Any] | None) -> Iterator[Metric]:
    """The latest tick's summary, as the worker published it in Redis."""
    if tick is None:
        return
    fields = (
        ("duration_s", "autorecovery_tick_duration_seconds", "Duration of the latest tick"),
        (
            "finished_at",
            "autorecovery_tick_last_finished_timestamp_seconds",
            "When the latest tick finished (Unix time)",
        ),
        ("hosts", "autorecovery_tick_hosts", "Hosts the latest tick evaluated"),
        ("enqueued", "autorecovery_tick_enqueued", "Activations the latest tick queued"),
    )
    for key, name, text in fields:
        value = tick.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            yield GaugeMetricFamily(name, text, value=float(value))
