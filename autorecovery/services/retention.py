"""Retention: prune the audit log, closed activations, VM runs and charges past their age."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from autorecovery.adapters.store import PG_REPOS, Database
from autorecovery.ports import Repos
from autorecovery.services import Clock

log = logging.getLogger(__name__)

DAY_S = 86400.0


@dataclass(frozen=True)
class RetentionPolicy:
    """How long each kind of history is kept, and how many rows one statement deletes."""

    audit_days: float = 90.0
    activations_days: float = 30.0
    vm_runs_days: float = 30.0
    batch_size: int = 5000

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Return, for each kind of row, the time before which it goes."""
        days = {
            "audit_log": self.audit_days,
            "activations": self.activations_days,
            "sd_activations": self.activations_days,
            "ticks": self.activations_days,
            "charges": self.vm_runs_days,
            "vm_runs": self.vm_runs_days,
        }
        # Charges before VM runs: a run's remaining (newer) charges go with it.
        return {kind: now - timedelta(seconds=n * DAY_S) for kind, n in days.items()}


class RetentionService:
    """Deletes history past its retention, batch by batch, and audits one summary."""

    def __init__(self, db: Database, clock: Clock, policy: RetentionPolicy, repos: Repos = PG_REPOS) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self.repos = repos

    def prune(self, *, dry_run: bool = False, actor: str = "auto") -> dict[str, Any]:
        """Delete (or, with ``dry_run``, count) what is past retention.

        Each batch is its own short transaction, so pruning a large backlog never holds locks
        for long; the summary is one audit entry (none for a dry run).

        Returns:
            ``{"dry_run", "cutoffs": {kind: iso time}, "rows": {kind: n}}``.
        """
        cutoffs = self.policy.cutoffs(self.clock())
        rows = {kind: self._prune_kind(kind, before, dry_run) for kind, before in cutoffs.items()}
        summary = {
            "dry_run": dry_run,
            "cutoffs": {kind: before.isoformat() for kind, before in cutoffs.items()},
            "rows": rows,
        }
        if not dry_run:
            with self.db.transaction() as conn:
                self.repos.audit.add(
                    conn,
                    at=self.clock(),
                    object_type="retention",
                    object_id="history",
                    event="pruned",
                    actor=actor,
                    reason="retention",
                    details=summary,
                )
            log.info("pruned history past retention: %s", rows)
        return summary

    def _prune_kind(self, kind: str, before: datetime, dry_run: bool) -> int:
        if dry_run:
            with self.db.transaction() as conn:
                return int(self.repos.retention.count_older(conn, kind, before))
        total = 0
        while True:
            with self.db.transaction() as conn:
                deleted = int(self.repos.retention.delete_batch(conn, kind, before, self.policy.batch_size))
            total += deleted
            if deleted < self.policy.batch_size:
                return total
