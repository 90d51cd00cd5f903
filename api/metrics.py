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
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from autorecovery import keys
from models.domain import HostStatus
from models.errors import TransientError
from models.policy import Skip

log = logging.getLogger(__name__)

Counts = Callable[[], dict[str, Any]]
LastTick = Callable[[], dict[str, Any] | None]


def read_last_tick(client: redis.Redis) -> dict[str, Any] | None:
    """Return the latest finished tick's summary that the worker published, or None."""
    raw = client.get(keys.last_tick())
    if raw is None:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) else None


class FleetCollector(Collector):
    """Hosts by status, activations by trigger and outcome, lock skips, the last tick."""

    def __init__(self, counts: Counts, last_tick: LastTick) -> None:
        self._counts = counts
        self._last_tick = last_tick

    def collect(self) -> Iterator[Metric]:
        """Read PostgreSQL and Redis and yield the metric families."""
        source_up = GaugeMetricFamily(
            "autorecovery_metrics_source_up",
            "1 when the source could be read for this scrape",
            labels=["source"],
        )
        try:
            counts = self._counts()
        except TransientError as exc:
            log.warning("metrics: cannot read PostgreSQL: %s", exc)
            source_up.add_metric(["postgresql"], 0)
        else:
            source_up.add_metric(["postgresql"], 1)
            yield from _fleet_families(counts)
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


def build_registry(counts: Counts, last_tick: LastTick) -> CollectorRegistry:
    """Return a private registry holding only the fleet collector (nothing is read until scraped)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(counts, last_tick))
    return registry
