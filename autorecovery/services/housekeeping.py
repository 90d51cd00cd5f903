"""Housekeeping in a task of its own: reaping, re-sends and fence pushes, never two runs at once.

Beat sends ``autorecovery.housekeeping`` every tick interval. A run takes a lease in PostgreSQL
(on its clock) for at most the task's hard time limit, so a duplicate delivery or a second beat
stops at once, and a run killed mid-way is followed by the next one when its lease runs out. The
tick's coordinator no longer waits on agents that do not answer: it only claims and dispatches.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass

from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.services import Clock
from autorecovery.services.reaper import ReapCounts, Reaper
from models.errors import StoreUnavailable

log = logging.getLogger(__name__)


@dataclass
class HousekeepingResult:
    """What one run did, or why it did not run."""

    run_id: str
    skipped: str | None = None
    reaped: int = 0
    resent: int = 0
    checks_resent: int = 0
    fences_pushed: int = 0
    fences_failed: int = 0
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, object]:
        """Present the result as JSON (the run's summary)."""
        return asdict(self)


class HousekeepingService:
    """Runs the reaper under a lease, so that runs never overlap."""

    def __init__(
        self, db: Database, reaper: Reaper, clock: Clock, lease_s: float, repos: Repos = PG_REPOS
    ) -> None:
        self.db = db
        self.reaper = reaper
        self.clock = clock
        self.lease_s = lease_s
        self.repos = repos

    def run(self, run_id: str | None = None) -> HousekeepingResult:
        """Take the lease and do one run; a run that finds the lease held does nothing."""
        run_id = run_id or str(uuid.uuid4())
        started = time.perf_counter()
        with self.db.transaction() as conn:
            claimed = self.repos.ticks.claim_housekeeping(conn, run_id, self.lease_s)
        if not claimed:
            log.info("housekeeping %s skipped: another run holds the lease", run_id)
            return HousekeepingResult(run_id, skipped="another run holds the lease")
        try:
            counts: ReapCounts = self.reaper.run(self.clock())
        finally:
            self._release(run_id)
        result = HousekeepingResult(run_id, **asdict(counts), duration_s=time.perf_counter() - started)
        log.info("housekeeping: %s", result.as_dict())
        return result

    def _release(self, run_id: str) -> None:
        try:
            with self.db.transaction() as conn:
                self.repos.ticks.release_housekeeping(conn, run_id)
        except StoreUnavailable as exc:
            log.warning("housekeeping %s: lease not released (%s); it runs out by itself", run_id, exc)
