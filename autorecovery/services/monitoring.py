"""The monitoring tick: pull, store, transition and decide a batch at a time, then admit.

Per batch a constant number of statements (read, reports, transitions, decisions); per tick a
constant number more (reaper, pauses, observer, incidents, one admission under the caps).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from autorecovery.adapters.agents import AgentClient, Target
from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import STATEMENTS, Database
from autorecovery.adapters.store.hosts import HostRow
from autorecovery.services import Clock, Enqueuer
from models.domain import (
    Cluster,
    DomainStatus,
    HostStatus,
    Report,
    Trigger,
    domains_by_status,
    effective_cluster,
)
from models.errors import BrokerUnavailable
from models.policy import AUTO_ACTIVATABLE, Decision, Evaluation, Skip, evaluate
from models.safety import FLEET, Candidate, CapPolicy, Gates, admit, observer_block

log = logging.getLogger(__name__)

AUTO_ACTOR = "auto"


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

    @property
    def gap_s(self) -> float:
        """Without a full tick for this long, the observer starts over with a quiet tick."""
        return 3 * self.tick_interval_s


@dataclass
class TickResult:
    """What one tick did, for logs, metrics and benchmarks."""

    hosts: int = 0
    batches: int = 0
    pulled: int = 0
    transitions: int = 0
    enqueued: int = 0
    capped: int = 0
    reaped: int = 0
    silent: int = 0
    statements: int = 0
    pull_s: float = 0.0
    duration_s: float = 0.0
    gate: str | None = None
    decisions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """Present the result as JSON (it is the task's return value)."""
        return {
            "hosts": self.hosts,
            "batches": self.batches,
            "pulled": self.pulled,
            "transitions": self.transitions,
            "enqueued": self.enqueued,
            "capped": self.capped,
            "reaped": self.reaped,
            "silent": self.silent,
            "statements": self.statements,
            "pull_s": round(self.pull_s, 4),
            "duration_s": round(self.duration_s, 4),
            "gate": self.gate,
            "decisions": self.decisions,
        }

    def count(self, code: str) -> None:
        """Count one decision."""
        self.decisions[code] = self.decisions.get(code, 0) + 1


def needs_pull(report: Report | None, cfg: TickConfig, now_s: float) -> bool:
    """True unless the host pushed a report during the last tick interval."""
    if report is None or report.source != "push":
        return True
    return now_s - report.reported_at.timestamp() > cfg.tick_interval_s


def is_quiet(last_full_tick_at: datetime | None, now: datetime, cfg: TickConfig) -> bool:
    """True when no full tick of fresh data happened recently (a start, or a gap)."""
    if not cfg.quiet_period:
        return False
    return last_full_tick_at is None or (now - last_full_tick_at).total_seconds() > cfg.gap_s


class MonitoringService:
    """Works through the fleet in batches, then admits activations under the caps."""

    def __init__(
        self,
        db: Database,
        agents: AgentClient,
        enqueue: Enqueuer,
        cfg: TickConfig,
        clock: Clock,
        repos: Repos = PG_REPOS,
        redis_ping: Callable[[], bool] = lambda: True,
        queue_domains: Callable[[], list[str]] = lambda: [],
    ) -> None:
        self.db = db
        self.repos = repos
        self.agents = agents
        self.enqueue = enqueue
        self.cfg = cfg
        self.clock = clock
        self.redis_ping = redis_ping
        self.queue_domains = queue_domains

    def tick(self) -> TickResult:
        """Run one monitoring tick over the whole fleet; safe to run twice at once."""
        started = time.perf_counter()
        statements_before = STATEMENTS.count
        result = TickResult()
        now = self.clock()
        with self.db.transaction() as conn:
            reaped = self.repos.activations.reap(
                conn,
                now=now,
                queued_before=now - timedelta(seconds=self.cfg.queued_ttl_s),
                running_before=now - timedelta(seconds=self.cfg.reap_running_after_s),
            )
            orphans = self.repos.activations.reset_orphans(
                conn, now=now, before=now - timedelta(seconds=self.cfg.reap_running_after_s)
            )
            self.repos.storage.reap_activations(
                conn,
                now=now,
                queued_before=now - timedelta(seconds=self.cfg.queued_ttl_s),
                running_before=now - timedelta(seconds=self.cfg.reap_running_after_s),
            )
            domains = self.repos.storage.all_domains(conn)
            maintenance = domains_by_status(domains, DomainStatus.MAINTENANCE)
            clusters = {
                cid: effective_cluster(c, maintenance)
                for cid, c in self.repos.hosts.all_clusters(conn).items()
            }
            pauses = self.repos.safety.active_pauses(conn, now)
            observer = self.repos.safety.observer_state(conn)
        for row in reaped:
            log.warning("host %s: activation %s abandoned (was %s)", row["host_id"], row["id"], row["was"])
        for host_id in orphans:
            log.warning("host %s: was initializing with no activation in flight; non_operational", host_id)
        result.reaped = len(reaped) + len(orphans)
        quiet = is_quiet(observer.get("last_full_tick_at"), now, self.cfg)
        gates = Gates(pauses=pauses, inactive_domains=domains_by_status(domains, DomainStatus.INACTIVE))
        candidates: list[tuple[Candidate, Decision]] = []
        observed = 0
        after = ""
        while True:
            with self.db.transaction() as conn:
                batch = self.repos.hosts.batch_after(conn, after, self.cfg.batch_size)
            if not batch:
                break
            after = batch[-1][0].id
            observed += self._run_batch(batch, clusters, gates, result, candidates)

        now = self.clock()
        result.gate = observer_block(
            silent=result.silent,
            observed=observed,
            max_silent_share=self.cfg.max_silent_share,
            quiet=quiet,
            redis_ok=self.redis_ping(),
        )
        with self.db.transaction() as conn:
            self.repos.safety.record_observer(
                conn, now=now, gate=result.gate, silent=result.silent, observed=observed
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
        for sd in moved:
            log.warning("storage domain %s: %s -> %s", sd["id"], sd["from_status"], sd["to_status"])
        fleet_pause = pauses.get(FLEET)
        paused = fleet_pause is not None and fleet_pause.is_active(now)
        # Storage domain reactivation is automatic activation too: gated and paused alike.
        queued = self.queue_domains() if result.gate is None and not paused else []
        if queued:
            log.info("tick: storage domain activations queued: %s", ", ".join(queued))
        for inc in changes:
            log.warning(
                "cluster %s: %s for %s %s (%s hosts)",
                inc["cluster_id"],
                inc["event"],
                inc["reason"],
                inc["subject"],
                inc["hosts"],
            )
        if result.gate is not None and candidates:
            log.warning("tick: no automatic activation: %s", result.gate)
            held = [Decision(c.host_id, Skip.OBSERVER_UNHEALTHY.value, result.gate) for c, _ in candidates]
            for _ in held:
                result.count(Skip.OBSERVER_UNHEALTHY.value)
            with self.db.transaction() as conn:
                self.repos.hosts.record_decisions(conn, held, now)
        elif candidates:
            self._admit(candidates, now, result)
        result.statements = STATEMENTS.count - statements_before
        result.duration_s = time.perf_counter() - started
        log.info("tick: %s", result.as_dict())
        return result

    def _run_batch(
        self,
        batch: list[HostRow],
        clusters: dict[str, Cluster],
        gates: Gates,
        result: TickResult,
        candidates: list[tuple[Candidate, Decision]],
    ) -> int:
        """Pull, store, transition and decide one batch; return how many hosts it observed."""
        now = self.clock()
        now_s = now.timestamp()
        latest = {host.id: report for host, report, _ in batch}
        targets = [
            Target(host.id, host.agent_url)
            for host, report, _ in batch
            if needs_pull(report, self.cfg, now_s)
        ]
        pull_started = time.perf_counter()
        pulled = self.agents.pull_reports(targets, now)
        result.pull_s += time.perf_counter() - pull_started
        for report in pulled:
            latest[report.host_id] = report
        now = self.clock()

        evaluations: list[Evaluation] = []
        observed = 0
        for host, _, _ in batch:
            cluster = clusters.get(host.cluster_id)
            if cluster is None:  # registered after this tick read the clusters
                continue
            ev = evaluate(host, latest[host.id], cluster, now, self.cfg.report_max_age_s, gates)
            evaluations.append(ev)
            if host.status is not HostStatus.MAINTENANCE:
                observed += 1
                result.silent += ev.assessment.is_silent
            if ev.decision.is_activate:
                waiting = ev.host.status_changed_at or now
                candidates.append((Candidate(host.id, host.cluster_id, waiting), ev.decision))
            else:
                result.count(ev.decision.code)
            if ev.transition is not None:
                log.info(
                    "host %s: %s -> %s (%s: %s)",
                    host.id,
                    ev.transition.expected.value,
                    ev.transition.status.value,
                    ev.transition.reason,
                    ev.transition.detail,
                )

        previous = {host.id: (row["last_decision"], row["last_decision_detail"]) for host, _, row in batch}
        # Only decisions that changed are written: a steady fleet writes none.
        settled = [
            ev.decision
            for ev in evaluations
            if not ev.decision.is_activate and previous[ev.host.id] != (ev.decision.code, ev.decision.detail)
        ]
        with self.db.transaction() as conn:
            self.repos.hosts.upsert_reports(conn, pulled, now)
            changed = self.repos.hosts.apply_transitions(
                conn, [ev.transition for ev in evaluations if ev.transition], now, AUTO_ACTOR
            )
            self.repos.hosts.record_decisions(conn, settled, now)
        result.hosts += len(batch)
        result.batches += 1
        result.pulled += len(pulled)
        result.transitions += len(changed)
        return observed

    def _admit(self, candidates: list[tuple[Candidate, Decision]], now: datetime, result: TickResult) -> None:
        """Queue activations oldest first under the caps, serialised against other ticks."""
        with self.db.transaction() as conn:
            self.repos.safety.lock_admission(conn)
            in_flight = self.repos.safety.in_flight_by_cluster(conn)
            sizes = self.repos.safety.cluster_sizes(conn)
            admission = admit([c for c, _ in candidates], in_flight, sizes, self.cfg.caps)
            created = self.repos.activations.create_many(
                conn,
                [(str(uuid.uuid4()), c.host_id) for c in admission.admitted],
                trigger=Trigger.AUTO.value,
                actor=AUTO_ACTOR,
                now=now,
                statuses=[s.value for s in AUTO_ACTIVATABLE],
                reason="fresh report shows no problem",
            )
            decided = {c.host_id: d for c, d in candidates}
            decisions = [decided[c.host_id] for c in admission.admitted]
            decisions += [Decision(c.host_id, Skip.CAPPED.value, why) for c, why in admission.capped]
            self.repos.hosts.record_decisions(conn, decisions, now)
        for cand, why in admission.capped:
            log.info("host %s: capped: %s", cand.host_id, why)
        for code in [d.code for d in decisions]:
            result.count(code)
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
