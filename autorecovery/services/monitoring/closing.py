"""Closing a tick once its last batch reported: observer gate, incidents, storage domains, admission.

Admission runs once per tick over every batch's candidates, oldest first, under the caps and an
advisory lock, so the caps stay exact fleet-wide however many worker processes ran the batches.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from autorecovery.adapters.store import Repos
from autorecovery.adapters.store.db import Database
from autorecovery.services import Clock, Enqueuer
from autorecovery.services.monitoring.batch import AUTO_ACTOR
from autorecovery.services.monitoring.config import TickConfig, TickResult, is_quiet
from models.domain import Trigger
from models.errors import BrokerUnavailable
from models.policy import AUTO_ACTIVATABLE, REPAIR, Decision, Skip
from models.safety import FLEET, Candidate, admit, observer_block

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Closer:
    """Closes ticks: everything a tick does once per tick, after its batches."""

    db: Database
    repos: Repos
    enqueue: Enqueuer
    cfg: TickConfig
    clock: Clock
    redis_ping: Callable[[], bool]
    queue_domains: Callable[[], list[str]]

    def close(self, result: TickResult, batches: list[dict[str, Any]]) -> TickResult:
        """Merge the batches into ``result``, then gate, follow domains and admit."""
        candidates: list[tuple[Candidate, Decision]] = []
        for batch in batches:
            result.add_batch(batch["summary"])
            candidates += [_candidate(c) for c in batch["candidates"]]
        result.batches = len(batches)
        now = self.clock()
        result.gate = self._gate(result, now)
        self._follow(result, now)
        if result.gate is not None and candidates:
            log.warning("tick %s: no automatic activation: %s", result.tick_id, result.gate)
            held = [Decision(c.host_id, Skip.OBSERVER_UNHEALTHY.value, result.gate) for c, _ in candidates]
            result.count(Skip.OBSERVER_UNHEALTHY.value, len(held))
            with self.db.transaction() as conn:
                self.repos.hosts.record_decisions(conn, held, now)
        elif candidates:
            self._admit(candidates, now, result)
        return result

    def _gate(self, result: TickResult, now: datetime) -> str | None:
        with self.db.transaction() as conn:
            observer = self.repos.safety.observer_state(conn)
        return observer_block(
            silent=result.silent,
            silent_ids=result.silent_ids,
            observed=result.observed,
            max_silent_share=self.cfg.max_silent_share,
            quiet=is_quiet(observer.get("last_full_tick_at"), now, self.cfg),
            redis_ok=self.redis_ping(),
        )

    def _follow(self, result: TickResult, now: datetime) -> None:
        """Record the observer, track incidents, move storage domains, queue their activations."""
        with self.db.transaction() as conn:
            self.repos.safety.record_observer(
                conn, now=now, gate=result.gate, silent=result.silent, observed=result.observed
            )
            changes = self.repos.safety.track_incidents(
                conn,
                now=now,
                since=now - timedelta(seconds=self.cfg.incident_window_s),
                min_hosts=self.cfg.incident_min_hosts,
            )
            moved = self.repos.storage.follow_monitoring(
                conn,
                now=now,
                fresh_after=now - timedelta(seconds=self.cfg.report_max_age_s),
                inactive_before=now - timedelta(seconds=self.cfg.sd_inactive_after_s),
            )
            pauses = self.repos.safety.active_pauses(conn, now)
        for sd in moved:
            log.warning("storage domain %s: %s -> %s", sd["id"], sd["from_status"], sd["to_status"])
        for inc in changes:
            log.warning(
                "cluster %s: %s for %s %s (%s hosts)",
                inc["cluster_id"],
                inc["event"],
                inc["reason"],
                inc["subject"],
                inc["hosts"],
            )
        fleet_pause = pauses.get(FLEET)
        paused = fleet_pause is not None and fleet_pause.is_active(now)
        # Storage domain reactivation is automatic activation too: gated and paused alike.
        queued = self.queue_domains() if result.gate is None and not paused else []
        if queued:
            log.info("tick %s: storage domain activations queued: %s", result.tick_id, ", ".join(queued))

    def _admit(self, candidates: list[tuple[Candidate, Decision]], now: datetime, result: TickResult) -> None:
        """Queue activations oldest first under the caps, serialised against other ticks."""
        with self.db.transaction() as conn:
            self.repos.safety.lock_admission(conn)
            in_flight = self.repos.safety.in_flight_by_cluster(conn)
            sizes = self.repos.safety.cluster_sizes(conn)
            queued = self.repos.safety.queued_activations(conn)
            admission = admit([c for c, _ in candidates], in_flight, sizes, self.cfg.caps, queued)
            decided = {c.host_id: d for c, d in candidates}
            created = []
            # A repair is audited as one (``activation_queued`` with reason ``repair``).
            for is_repair, reason in ((False, "fresh report shows no problem"), (True, REPAIR)):
                created += self.repos.activations.create_many(
                    conn,
                    [
                        (str(uuid.uuid4()), c.host_id)
                        for c in admission.admitted
                        if decided[c.host_id].is_repair is is_repair
                    ],
                    trigger=Trigger.AUTO.value,
                    actor=AUTO_ACTOR,
                    now=now,
                    statuses=[s.value for s in AUTO_ACTIVATABLE],
                    reason=reason,
                )
            decisions = [decided[c.host_id] for c in admission.admitted]
            decisions += [Decision(c.host_id, Skip.CAPPED.value, why) for c, why in admission.capped]
            self.repos.hosts.record_decisions(conn, decisions, now)
        for cand, why in admission.capped:
            log.info("host %s: capped: %s", cand.host_id, why)
        for decision in decisions:
            result.count(decision.code)
        result.capped += len(admission.capped)
        self._send(created)
        result.enqueued += len(created)

    def _send(self, created: list[tuple[str, str]]) -> None:
        failed: list[tuple[str, str]] = []
        error = ""
        for activation_id, host_id in created:
            try:
                self.enqueue(activation_id, host_id, Trigger.AUTO.value, AUTO_ACTOR)
                log.info("host %s: activation %s queued", host_id, activation_id)
            except BrokerUnavailable as exc:
                log.error("host %s: cannot queue activation %s: %s", host_id, activation_id, exc)
                failed.append((activation_id, host_id))
                error = str(exc)
        if failed:
            with self.db.transaction() as conn:
                self.repos.activations.mark_enqueue_failed(conn, failed, self.clock(), error)


def _candidate(data: dict[str, Any]) -> tuple[Candidate, Decision]:
    host_id = str(data["host_id"])
    waiting = datetime.fromisoformat(str(data["waiting_since"]))
    return (
        Candidate(host_id, str(data["cluster_id"]), waiting),
        Decision(host_id, str(data["code"]), str(data["detail"])),
    )
