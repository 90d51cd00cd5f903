"""Prometheus metrics computed at scrape time from PostgreSQL and Redis.

The API may run as several processes, none of which sees the workers' events, so nothing is
counted in memory: a custom collector on a private registry reads the fleet's state when
scraped. A source that cannot be read reports ``autorecovery_metrics_source_up 0`` instead of
failing the scrape.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from autorecovery.adapters import keys
from autorecovery.adapters.store import Database
from autorecovery.adapters.store.metrics import error_and_storage_gauges, safety_gauges
from models.domain import DomainStatus, HostStatus
from models.errors import TransientError
from models.policy import Skip
from models.safety import FLEET

log = logging.getLogger(__name__)

Counts = Callable[[], dict[str, Any]]
LastTick = Callable[[], dict[str, Any] | None]
SafetyCounts = Callable[[], dict[str, Any]]
ErrorStorageCounts = Callable[[], dict[str, Any]]


def read_last_tick(client: redis.Redis) -> dict[str, Any] | None:
    """Return the latest finished tick's summary that the worker published, or None."""
    raw = client.get(keys.last_tick())
    if raw is None:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) else None


def read_safety(db: Database, clock: Callable[[], datetime]) -> dict[str, Any]:
    """Count what gates automatic activation now, in one transaction."""
    now = clock()
    with db.transaction() as conn:
        return safety_gauges(conn, now)


def read_error_and_storage(
    db: Database, clock: Callable[[], datetime], charge_window_s: float
) -> dict[str, Any]:
    """Count hosts in error, charges within the window and storage domains, in one transaction."""
    since = clock() - timedelta(seconds=charge_window_s)
    with db.transaction() as conn:
        return error_and_storage_gauges(conn, since)


def gate_code(gate: str | None) -> str:
    """The reason code of an observer gate (the text before ':'), or '' when there is none."""
    return "" if not gate else gate.split(":", 1)[0].strip()


class FleetCollector(Collector):
    """Hosts by status, activations, lock skips, the last tick, safety, error state, storage."""

    def __init__(
        self,
        counts: Counts,
        last_tick: LastTick,
        safety: SafetyCounts | None = None,
        error_storage: ErrorStorageCounts | None = None,
    ) -> None:
        self._counts = counts
        self._last_tick = last_tick
        self._safety = safety
        self._error_storage = error_storage

    def collect(self) -> Iterator[Metric]:
        """Read PostgreSQL and Redis and yield the metric families."""
        source_up = GaugeMetricFamily(
            "autorecovery_metrics_source_up",
            "1 when the source could be read for this scrape",
            labels=["source"],
        )
        try:
            counts = self._counts()
            safety = self._safety() if self._safety else None
            error_storage = self._error_storage() if self._error_storage else None
        except TransientError as exc:
            log.warning("metrics: cannot read PostgreSQL: %s", exc)
            source_up.add_metric(["postgresql"], 0)
        else:
            source_up.add_metric(["postgresql"], 1)
            yield from _fleet_families(counts)
            if safety is not None:
                yield from _safety_families(safety)
            if error_storage is not None:
                yield from _error_storage_families(error_storage)
        try:
            tick = self._last_tick()
        except (redis.RedisError, ValueError) as exc:
            log.warning("metrics: cannot read the last tick from Redis: %s", exc)
            source_up.add_metric(["redis"], 0)
        else:
            source_up.add_metric(["redis"], 1)
            yield from _tick_families(tick)
        yield source_up


def _fleet_families(counts: dict[str, Any]) -> Iterator[Metric]:
    hosts = GaugeMetricFamily("autorecovery_hosts", "Hosts by status", labels=["status"])
    by_status: dict[str, int] = dict.fromkeys((s.value for s in HostStatus), 0)
    by_status.update(counts["hosts_by_status"])
    for status, n in sorted(by_status.items()):
        hosts.add_metric([status], n)
    yield hosts

    activations = CounterMetricFamily(
        "autorecovery_activations",
        "Activations by trigger and outcome (queued/running while in flight); "
        "deleting a host removes its activations",
        labels=["trigger", "outcome"],
    )
    lock_skips = 0
    for row in counts["activations"]:
        activations.add_metric([row["trigger"], row["outcome"]], int(row["n"]))
        if row["outcome"] == Skip.LOCK_BUSY.value:
            lock_skips += int(row["n"])
    yield activations
    yield CounterMetricFamily(
        "autorecovery_lock_skips",
        "Activations skipped because another held the host's lock",
        value=lock_skips,
    )


def _gauge(name: str, text: str, value: object) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=float(value) if isinstance(value, int | float) else 0.0)


def _safety_families(found: dict[str, Any]) -> Iterator[Metric]:
    gate = found.get("gate")
    gated = GaugeMetricFamily(
        "autorecovery_observer_gated",
        "1 while the observer holds every automatic activation (as of the last full tick); "
        "reason: the gate's code, e.g. monitoring_stale, quiet_period, redis_unavailable",
        labels=["reason"],
    )
    gated.add_metric([gate_code(gate)], 1.0 if gate else 0.0)
    yield gated
    yield _gauge(
        "autorecovery_observer_silent_hosts",
        "Hosts without fresh monitoring data at the last full tick",
        found.get("silent_hosts"),
    )
    yield _gauge(
        "autorecovery_observer_observed_hosts",
        "Hosts monitored at the last full tick (maintenance excluded)",
        found.get("observed_hosts"),
    )
    last = found.get("last_full_tick_at")
    if isinstance(last, datetime):
        yield _gauge(
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
        ("incidents_open", "autorecovery_incidents_open", "Correlated-failure incidents still open"),
    ):
        yield _gauge(name, text, found.get(key))
    in_flight = GaugeMetricFamily(
        "autorecovery_activations_in_flight",
        "Activations queued or running, by cluster",
        labels=["cluster"],
    )
    for cluster, n in sorted((found.get("in_flight") or {}).items()):
        in_flight.add_metric([cluster], float(n))
    yield in_flight


def _error_storage_families(found: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge(
        "autorecovery_hosts_in_error",
        "Hosts in error: VMs kept failing there and starting elsewhere",
        found.get("hosts_in_error"),
    )
    yield _gauge(
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
    activations = CounterMetricFamily(
        "autorecovery_storage_domain_activations",
        "Storage domain activations by trigger and outcome (queued/running while in flight)",
        labels=["trigger", "outcome"],
    )
    for row in found.get("sd_activations") or ():
        activations.add_metric([row["trigger"], row["outcome"]], float(row["n"]))
    yield activations


def _tick_families(tick: dict[str, Any] | None) -> Iterator[Metric]:
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


def build_registry(
    counts: Counts,
    last_tick: LastTick,
    safety: SafetyCounts | None = None,
    error_storage: ErrorStorageCounts | None = None,
) -> CollectorRegistry:
    """Return a private registry holding only the fleet collector (nothing is read until scraped)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(counts, last_tick, safety, error_storage))
    return registry
