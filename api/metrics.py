"""Prometheus metrics read at scrape time from PostgreSQL, Redis and the broker.

The API may run as several processes, none of which sees the workers' events, so nothing is
counted in memory: a custom collector on a private registry reads the fleet's state when
scraped. Counters and histograms are rows that PostgreSQL triggers keep (they only go up, and
every replica reads the same); hosts, holds and queues are gauges. A source that cannot be read
reports ``autorecovery_metrics_source_up 0`` instead of failing the scrape.
"""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import redis
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from api.metric_families import (
    error_storage_families,
    fleet_families,
    gate_code,
    safety_families,
    tick_families,
)
from autorecovery import __version__
from autorecovery.adapters import keys
from autorecovery.adapters.store import Database
from autorecovery.adapters.store.metrics import error_and_storage_gauges, fleet_gauges, safety_gauges
from models.errors import TransientError

__all__ = ["FleetCollector", "build_registry", "gate_code", "read_fleet", "read_last_tick"]

log = logging.getLogger(__name__)

Counts = Callable[[], dict[str, Any]]
LastTick = Callable[[], dict[str, Any] | None]
SafetyCounts = Callable[[], dict[str, Any]]
ErrorStorageCounts = Callable[[], dict[str, Any]]
BeatSeen = Callable[[], float | None]
QueueLengths = Callable[[], dict[str, int]]


def read_last_tick(client: redis.Redis) -> dict[str, Any] | None:
    """Return the latest finished tick's summary that the worker published, or None."""
    raw = client.get(keys.last_tick())
    if raw is None:
        return None
    data = json.loads(raw)
    return data if isinstance(data, dict) else None


def read_beat_seen(client: redis.Redis) -> float | None:
    """Return when the leading beat last ran its loop (Unix time), or None if never seen."""
    raw = client.get(keys.beat_heartbeat())
    return None if raw is None else float(raw)


def read_fleet(db: Database) -> dict[str, Any]:
    """Read hosts per cluster and the counters and histograms, in one transaction."""
    with db.transaction() as conn:
        return fleet_gauges(conn)


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


def build_info() -> InfoMetricFamily:
    """``autorecovery_build_info``: the package's version and the Python it runs on."""
    return InfoMetricFamily(
        "autorecovery_build",
        "The running autorecovery version",
        value={"version": __version__, "python": platform.python_version()},
    )


class FleetCollector(Collector):
    """Hosts, counters, histograms, the last tick, beat, safety, error state, storage, queues."""

    def __init__(
        self,
        counts: Counts,
        last_tick: LastTick,
        safety: SafetyCounts | None = None,
        error_storage: ErrorStorageCounts | None = None,
        *,
        beat_seen: BeatSeen | None = None,
        queues: QueueLengths | None = None,
    ) -> None:
        self._counts = counts
        self._last_tick = last_tick
        self._safety = safety
        self._error_storage = error_storage
        self._beat_seen = beat_seen
        self._queues = queues

    def collect(self) -> Iterator[Metric]:
        """Read PostgreSQL, Redis and the broker, and yield the metric families."""
        yield build_info()
        source_up = GaugeMetricFamily(
            "autorecovery_metrics_source_up",
            "1 when the source could be read for this scrape",
            labels=["source"],
        )
        yield from self._postgresql(source_up)
        yield from self._redis(source_up)
        if self._queues is not None:
            yield from self._broker(source_up)
        yield source_up

    def _postgresql(self, source_up: GaugeMetricFamily) -> Iterator[Metric]:
        try:
            counts = self._counts()
            safety = self._safety() if self._safety else None
            error_storage = self._error_storage() if self._error_storage else None
        except TransientError as exc:
            log.warning("metrics: cannot read PostgreSQL: %s", exc)
            source_up.add_metric(["postgresql"], 0)
            return
        source_up.add_metric(["postgresql"], 1)
        yield from fleet_families(counts)
        if safety is not None:
            yield from safety_families(safety)
        if error_storage is not None:
            yield from error_storage_families(error_storage)

    def _redis(self, source_up: GaugeMetricFamily) -> Iterator[Metric]:
        try:
            tick = self._last_tick()
            beat = self._beat_seen() if self._beat_seen else None
        except (redis.RedisError, ValueError) as exc:
            log.warning("metrics: cannot read the last tick from Redis: %s", exc)
            source_up.add_metric(["redis"], 0)
            return
        source_up.add_metric(["redis"], 1)
        yield from tick_families(tick)
        if beat is not None:
            yield GaugeMetricFamily(
                "autorecovery_beat_last_seen_timestamp_seconds",
                "When the leading beat last ran its loop (Unix time)",
                value=beat,
            )

    def _broker(self, source_up: GaugeMetricFamily) -> Iterator[Metric]:
        assert self._queues is not None
        try:
            lengths = self._queues()
        except TransientError as exc:
            log.warning("metrics: cannot read the broker's queues: %s", exc)
            source_up.add_metric(["broker"], 0)
            return
        source_up.add_metric(["broker"], 1)
        depth = GaugeMetricFamily(
            "autorecovery_broker_queue_depth",
            "Messages waiting in each broker queue (cached for a few seconds)",
            labels=["queue"],
        )
        for name, n in sorted(lengths.items()):
            depth.add_metric([name], float(n))
        yield depth


def build_registry(
    counts: Counts,
    last_tick: LastTick,
    safety: SafetyCounts | None = None,
    error_storage: ErrorStorageCounts | None = None,
    *,
    beat_seen: BeatSeen | None = None,
    queues: QueueLengths | None = None,
) -> CollectorRegistry:
    """Return a private registry holding only the fleet collector (nothing is read until scraped)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        FleetCollector(counts, last_tick, safety, error_storage, beat_seen=beat_seen, queues=queues)
    )
    return registry
