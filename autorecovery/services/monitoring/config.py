"""What the tick needs to know (its settings), what one batch is, and what a tick did."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autorecovery.services.reaper import ReaperConfig
from models.domain import Report
from models.safety import CapPolicy, silent_examples


@dataclass(frozen=True, slots=True)
class TickConfig:
    """What the tick needs to know of the settings."""

    batch_size: int
    report_max_age_s: float
    tick_interval_s: float
    queued_ttl_s: float
    reap_running_after_s: float
    caps: CapPolicy = field(default_factory=CapPolicy)
    max_silent_share: float = 0.5
    quiet_period: bool = True
    incident_min_hosts: int = 3
    incident_window_s: float = 300.0
    sd_inactive_after_s: float = 60.0
    #: A tick claimed less than this after the previous one is a duplicate and stops (0: never).
    min_spacing_s: float = 0.0
    #: A tick still unfinished after this is abandoned by the next one, which takes over.
    deadline_s: float = 60.0
    resend_after_s: float = 20.0
    max_resends: int = 2
    max_clock_skew_s: float = 30.0
    fence_backoff_max_s: float = 300.0
    #: The longest an init may run (AUTORECOVERY_INIT_MAX_S): a reaped init's host is held this long.
    init_max_s: float = 120.0
    #: Hosts per batch when they pushed their reports (no HTTP to spread; ``PushedCut``).
    pushed_batch_size: int = 10_000
    #: A sent activation with no step for this long gets its check step sent again (None: never).
    resend_check_after_s: float | None = None

    @property
    def reaper(self) -> ReaperConfig:
        """What the housekeeping needs of these settings (its fence backoff starts at one interval)."""
        return ReaperConfig(
            queued_ttl_s=self.queued_ttl_s,
            running_ttl_s=self.reap_running_after_s,
            resend_after_s=self.resend_after_s,
            max_resends=self.max_resends,
            fence_backoff_s=self.tick_interval_s,
            fence_backoff_max_s=self.fence_backoff_max_s,
            init_hold_s=self.init_max_s,
            resend_check_after_s=self.resend_check_after_s,
        )

    @property
    def gap_s(self) -> float:
        """Without a full tick for this long, the observer starts over with a quiet tick."""
        return 3 * self.tick_interval_s


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """One batch of one tick: the hosts with ``lo <= id < hi`` (``hi`` None: no upper bound)."""

    tick_id: str
    idx: int
    lo: str
    hi: str | None

    def as_dict(self) -> dict[str, Any]:
        """The batch task's kwargs (JSON)."""
        return {"tick_id": self.tick_id, "idx": self.idx, "lo": self.lo, "hi": self.hi}


#: Sends one batch to be run (a Celery task in a worker pool; the service itself when inline).
BatchSender = Callable[[BatchSpec], None]

#: What the coordinator did once per tick, kept with the tick until its last batch closes it.
COORDINATOR_COUNTS = ("statements",)

#: The counts a batch adds to its tick's summary.
BATCH_COUNTS = ("hosts", "pulled", "evaluated", "transitions", "silent", "observed", "statements")


@dataclass
class TickResult:
    """What one tick did, for logs, metrics and benchmarks: the whole tick, all batches."""

    tick_id: str = ""
    hosts: int = 0
    batches: int = 0
    pulled: int = 0
    #: Hosts evaluated (the others' inputs had not changed: their last evaluation was counted).
    evaluated: int = 0
    transitions: int = 0
    enqueued: int = 0
    capped: int = 0
    silent: int = 0
    silent_ids: list[str] = field(default_factory=list)
    observed: int = 0
    statements: int = 0
    pull_s: float = 0.0
    duration_s: float = 0.0
    gate: str | None = None
    skipped: str | None = None
    took_over: str | None = None
    decisions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """Present the result as JSON (the tick's summary)."""
        return {
            "tick_id": self.tick_id,
            "hosts": self.hosts,
            "batches": self.batches,
            "pulled": self.pulled,
            "evaluated": self.evaluated,
            "transitions": self.transitions,
            "enqueued": self.enqueued,
            "capped": self.capped,
            "silent": self.silent,
            "silent_ids": self.silent_ids,
            "observed": self.observed,
            "statements": self.statements,
            "pull_s": round(self.pull_s, 4),
            "duration_s": round(self.duration_s, 4),
            "gate": self.gate,
            "skipped": self.skipped,
            "took_over": self.took_over,
            "decisions": self.decisions,
        }

    def count(self, code: str, n: int = 1) -> None:
        """Count ``n`` decisions of ``code``."""
        self.decisions[code] = self.decisions.get(code, 0) + n

    def add_batch(self, summary: Mapping[str, Any]) -> None:
        """Add one batch's counts (as stored by the batch) to the tick's."""
        for name in BATCH_COUNTS:
            setattr(self, name, getattr(self, name) + int(summary.get(name, 0)))
        self.pull_s += float(summary.get("pull_s", 0.0))
        self.silent_ids = silent_examples(self.silent_ids, (str(i) for i in summary.get("silent_ids", ())))
        for code, n in dict(summary.get("decisions", {})).items():
            self.count(str(code), int(n))


def needs_pull(report: Report | None, cfg: TickConfig, now_s: float) -> bool:
    """True unless the host pushed a report during the last tick interval.

    A pushed report dated further ahead than the allowed clock skew is no reason to stop pulling
    (it was stored before such dates were refused; it would hold until its date).
    """
    if report is None:
        return True
    return needs_pull_of(report.source, report.reported_at, cfg, now_s)


def needs_pull_of(source: str | None, reported_at: datetime | None, cfg: TickConfig, now_s: float) -> bool:
    """``needs_pull`` of a stored report of ``source`` dated ``reported_at`` (None: no report)."""
    if source != "push" or reported_at is None:
        return True
    age_s = now_s - reported_at.timestamp()
    return not -cfg.max_clock_skew_s <= age_s <= cfg.tick_interval_s


def is_quiet(last_full_tick_at: datetime | None, now: datetime, cfg: TickConfig) -> bool:
    """True when no full tick of fresh data happened recently (a start, or a gap)."""
    if not cfg.quiet_period:
        return False
    return last_full_tick_at is None or (now - last_full_tick_at).total_seconds() > cfg.gap_s
