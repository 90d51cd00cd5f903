"""What the recovery bench watches the product with from outside: beat's sends, task events, queues.

Nothing here knows an activation's task names or states: the ticker sends whatever beat's
schedule holds, the event log keeps every task event, and re-sends are read from the store's
bookkeeping of sends (or, where that is gone, from the audit log's re-send entries).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
import redis

from bench.recovery_stats import TaskEvent

log = logging.getLogger(__name__)

#: Beat entries sent by the ticker: those due at least this often (the daily pruning is not).
MAX_PERIOD_S = 60.0


def period_s(schedule: object) -> float | None:
    """Seconds between sends of a beat entry (a number, a timedelta, or Celery's ``schedule``)."""
    if isinstance(schedule, int | float):
        return float(schedule)
    if isinstance(schedule, timedelta):
        return schedule.total_seconds()
    every = getattr(schedule, "run_every", None)
    return every.total_seconds() if isinstance(every, timedelta) else None


class Ticker:
    """Send beat's short-period entries at their intervals, as beat would, from a thread."""

    def __init__(self, app: Any, tick_interval_s: float) -> None:
        self.app = app
        self.entries = [
            (name, entry, every)
            for name, entry in app.conf.beat_schedule.items()
            if (every := period_s(entry.get("schedule"))) is not None and every <= MAX_PERIOD_S
        ]
        self.tick_interval_s = tick_interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-ticker", daemon=True)

    def start(self) -> None:
        """Start sending."""
        names = ", ".join(f"{name} every {every:g}s" for name, _, every in self.entries)
        log.info("ticker: %s", names)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        due = dict.fromkeys((name for name, _, _ in self.entries), time.monotonic())
        while not self._stop.is_set():
            now = time.monotonic()
            for name, entry, every in self.entries:
                if now >= due[name]:
                    due[name] = now + every
                    self._send(entry)
            self._stop.wait(0.05)

    def _send(self, entry: dict[str, Any]) -> None:
        try:
            self.app.send_task(
                entry["task"],
                args=entry.get("args"),
                kwargs=entry.get("kwargs"),
                **entry.get("options", {}),
            )
        except Exception:  # noqa: BLE001 - a thread boundary: a lost send is a missed tick
            log.exception("ticker: cannot send %s", entry["task"])


class EventLog:
    """Celery task events captured in a thread, for the whole run."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._events: list[TaskEvent] = []
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._conn: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Subscribe to task events (before anything the bench measures happens)."""
        self._conn = self.app.connection_for_read()
        self._receiver = self.app.events.Receiver(self._conn, handlers={"*": self._on_event})
        self._thread = threading.Thread(
            target=self._receiver.capture, kwargs={"limit": None, "timeout": None, "wakeup": False},
            name="bench-events", daemon=True,
        )
        self._thread.start()
        time.sleep(0.5)  # the subscription is in place before the caller goes on

    def stop(self) -> None:
        """Stop capturing."""
        if self._receiver is not None:
            self._receiver.should_stop = True
        if self._thread is not None:
            self._thread.join(5)
        if self._conn is not None:
            self._conn.release()

    def _on_event(self, event: dict[str, Any]) -> None:
        found = TaskEvent.from_celery(event)
        if found is not None:
            with self._lock:
                self._events.append(found)

    def mark(self) -> int:
        """A position in the log: ``since(mark)`` returns what came after it."""
        with self._lock:
            return len(self._events)

    def since(self, mark: int) -> list[TaskEvent]:
        """Events captured after ``mark``."""
        with self._lock:
            return list(self._events[mark:])

    def in_flight(self) -> int:
        """Task messages received or started and not ended yet (countdown steps included)."""
        last: dict[str, str] = {}
        with self._lock:
            for event in self._events:
                last[event.uuid] = event.type
        return sum(1 for kind in last.values() if kind in ("task-received", "task-started"))

    def names(self) -> dict[str, int]:
        """Task names received, with how many messages each (what the run saw, for the record)."""
        counts: dict[str, int] = {}
        with self._lock:
            for event in self._events:
                if event.type == "task-received" and event.name:
                    counts[event.name] = counts.get(event.name, 0) + 1
        return counts


def queued_messages(app: Any, queues: list[str]) -> int:
    """Messages waiting in the broker's queues (not yet taken by a worker)."""
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        return sum(int(channel.queue_declare(queue=q).message_count) for q in queues)


def store_resends(db: Any) -> tuple[int, str]:
    """Re-sends the store has counted so far, and where from: the ``sends`` column, else the audit."""
    with db.transaction() as conn:
        has_sends = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'activations' "
            "AND column_name = 'sends' AND table_schema = current_schema()"
        ).fetchone()
        if has_sends:
            row = conn.execute("SELECT coalesce(sum(sends - 1), 0) AS n FROM activations").fetchone()
            return int(row["n"]), "activations.sends"
        row = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE event LIKE %(pattern)s", {"pattern": "%resen%"}
        ).fetchone()
        return int(row["n"]), "audit_log"



class TickLog:
    """Monitoring ticks' published summaries, gathered as the product's capped history rolls."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._seen: dict[tuple[str, float], dict[str, Any]] = {}

    def gather(self) -> None:
        """Add the summaries in the history now (the history keeps only the latest ones)."""
        from autorecovery.adapters import keys

        for raw in self.client.lrange(keys.tick_history(), 0, -1):
            summary = json.loads(raw)
            self._seen[(str(summary.get("task_id")), float(summary.get("finished_at") or 0))] = summary

    def summaries(self) -> list[dict[str, Any]]:
        """Every summary gathered so far."""
        return list(self._seen.values())


def store_activations(db: Any, since: float) -> dict[str, int] | None:
    """Activations the store created since ``since`` (wall clock), by state; None if unreadable."""
    try:
        with db.transaction() as conn:
            rows = conn.execute(
                "SELECT state, count(*) AS n FROM activations WHERE queued_at >= to_timestamp(%(since)s) "
                "GROUP BY state",
                {"since": since},
            ).fetchall()
    except psycopg.Error as exc:  # the table changed shape: the figure is missing, not the run
        log.warning("cannot count activations: %s", exc)
        return None
    return {r["state"]: int(r["n"]) for r in rows}


#: Where an activation's time goes, from its record (seconds; PostgreSQL's and this clock agree:
#: one machine).
PHASES = {
    "admitted": "extract(epoch FROM a.queued_at) - %(since)s",
    "queue_wait": "extract(epoch FROM a.started_at - a.queued_at)",
    "send_to_close": "extract(epoch FROM a.ended_at - a.started_at)",
}


def store_phases(db: Any, since: float) -> dict[str, dict[str, float]] | None:
    """Median, p95 and max of each phase of the activations done since ``since``; None if unreadable."""
    columns = ", ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {sql}) AS {name}_median, "
        f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {sql}) AS {name}_p95, max({sql}) AS {name}_max"
        for name, sql in PHASES.items()
    )
    try:
        with db.transaction() as conn:
            row = conn.execute(
                f"SELECT {columns} FROM activations a "  # noqa: S608 - our own column names
                "WHERE a.queued_at >= to_timestamp(%(since)s) AND a.state = 'done'",
                {"since": since},
            ).fetchone()
    except psycopg.Error as exc:
        log.warning("cannot time activations: %s", exc)
        return None
    if row is None or row["admitted_median"] is None:
        return None
    return {
        name: {q: round(float(row[f"{name}_{q}"]), 3) for q in ("median", "p95", "max")}
        for name in PHASES
    }


def clients_on(url: str) -> int:
    """Connections to the Redis database of ``url`` (before the bench connects: someone else's)."""
    client = redis.Redis.from_url(url)
    try:
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        listed = client.client_list()
    finally:
        client.close()
    return sum(1 for c in listed if int(c.get("db", -1)) == db) - 1  # this client itself
