"""The monitoring tick: pull, store, transition, decide and enqueue, a batch at a time."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from autorecovery.agents import AgentClient, Target
from autorecovery.services import Clock, Enqueuer
from autorecovery.store import PG_REPOS, Repos
from autorecovery.store.db import STATEMENTS, Database
from autorecovery.store.hosts import HostRow
from models.domain import Cluster, Host, Report, Trigger
from models.errors import BrokerUnavailable
from models.policy import RECOVERABLE_STATUSES, Evaluation, evaluate

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


@dataclass
class TickResult:
    """What one tick did, for logs, metrics and benchmarks."""

    hosts: int = 0
    batches: int = 0
    pulled: int = 0
    transitions: int = 0
    enqueued: int = 0
    reaped: int = 0
    statements: int = 0
    pull_s: float = 0.0
    duration_s: float = 0.0
    decisions: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """Present the result as JSON (it is the task's return value)."""
        return {
            "hosts": self.hosts,
            "batches": self.batches,
            "pulled": self.pulled,
            "transitions": self.transitions,
            "enqueued": self.enqueued,
            "reaped": self.reaped,
            "statements": self.statements,
            "pull_s": round(self.pull_s, 4),
            "duration_s": round(self.duration_s, 4),
            "decisions": self.decisions,
        }


def needs_pull(report: Report | None, host: Host, cfg: TickConfig, now_s: float) -> bool:
    """True unless the host pushed a report during the last tick interval."""
    if report is None or report.source != "push":
        return True
    return now_s - report.reported_at.timestamp() > cfg.tick_interval_s


class MonitoringService:
    """Works through the fleet in batches; a constant number of statements per batch."""

    def __init__(
        self,
        db: Database,
        agents: AgentClient,
        enqueue: Enqueuer,
        cfg: TickConfig,
        clock: Clock,
        repos: Repos = PG_REPOS,
    ) -> None:
        self.db = db
        self.repos = repos
        self.agents = agents
        self.enqueue = enqueue
        self.cfg = cfg
        self.clock = clock

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
            clusters = self.repos.hosts.all_clusters(conn)
        for row in reaped:
            log.warning("host %s: activation %s abandoned (was %s)", row["host_id"], row["id"], row["was"])
        result.reaped = len(reaped)
        after = ""
        while True:
            with self.db.transaction() as conn:
                batch = self.repos.hosts.batch_after(conn, after, self.cfg.batch_size)
            if not batch:
                break
            after = batch[-1][0].id
            self._run_batch(batch, clusters, result)
        result.statements = STATEMENTS.count - statements_before
        result.duration_s = time.perf_counter() - started
        log.info("tick: %s", result.as_dict())
        return result

    def _run_batch(
        self,
        batch: list[HostRow],
        clusters: dict[str, Cluster],
        result: TickResult,
    ) -> None:
        now = self.clock()
        now_s = now.timestamp()
        latest = {host.id: report for host, report, _ in batch}
        targets = [
            Target(host.id, host.agent_url)
            for host, report, _ in batch
            if needs_pull(report, host, self.cfg, now_s)
        ]
        pull_started = time.perf_counter()
        pulled = self.agents.pull_reports(targets, now)
        result.pull_s += time.perf_counter() - pull_started
        for report in pulled:
            latest[report.host_id] = report
        now = self.clock()

        evaluations: list[Evaluation] = []
        for host, _, _ in batch:
            cluster = clusters.get(host.cluster_id)
            if cluster is None:  # registered after this tick read the clusters
                continue
            ev = evaluate(host, latest[host.id], cluster, now, self.cfg.report_max_age_s)
            evaluations.append(ev)
            result.decisions[ev.decision.code] = result.decisions.get(ev.decision.code, 0) + 1
            if ev.transition is not None:
                log.info(
                    "host %s: %s -> %s (%s: %s)",
                    host.id,
                    ev.transition.expected.value,
                    ev.transition.status.value,
                    ev.transition.reason,
                    ev.transition.detail,
                )

        candidates = [(str(uuid.uuid4()), ev.host.id) for ev in evaluations if ev.decision.is_activate]
        with self.db.transaction() as conn:
            self.repos.hosts.upsert_reports(conn, pulled, now)
            changed = self.repos.hosts.apply_transitions(
                conn, [ev.transition for ev in evaluations if ev.transition], now, AUTO_ACTOR
            )
            self.repos.hosts.record_decisions(conn, [ev.decision for ev in evaluations], now)
            created = self.repos.activations.create_many(
                conn,
                candidates,
                trigger=Trigger.AUTO.value,
                actor=AUTO_ACTOR,
                now=now,
                statuses=[s.value for s in RECOVERABLE_STATUSES],
                reason="fresh report shows no problem",
            )
        self._send(created)
        result.hosts += len(batch)
        result.batches += 1
        result.pulled += len(pulled)
        result.transitions += len(changed)
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
