"""One batch of a tick: pull, store, transition and decide, in a constant number of statements."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autorecovery.adapters.agents import AgentClient, Target
from autorecovery.adapters.store import Repos
from autorecovery.adapters.store.db import Conn
from autorecovery.adapters.store.hosts import HostRow
from autorecovery.services import Clock
from autorecovery.services.monitoring.config import TickConfig, needs_pull
from models.domain import Cluster, DomainStatus, domains_by_status, effective_cluster
from models.policy import Evaluation, evaluate
from models.safety import Gates, is_observed, silent_examples

log = logging.getLogger(__name__)

AUTO_ACTOR = "auto"


@dataclass
class BatchOutcome:
    """What a batch found: its counts and the hosts ready for activation (JSON, for the closer)."""

    counts: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Context:
    """What every batch of a tick evaluates against: clusters and the gates of pauses and domains."""

    clusters: dict[str, Cluster]
    gates: Gates


def load_context(conn: Conn, repos: Repos, now: datetime) -> Context:
    """Read the clusters (domains in maintenance left out), the pauses and the inactive domains."""
    domains = repos.storage.all_domains(conn)
    maintenance = domains_by_status(domains, DomainStatus.MAINTENANCE)
    clusters = {cid: effective_cluster(c, maintenance) for cid, c in repos.hosts.all_clusters(conn).items()}
    pauses = repos.safety.active_pauses(conn, now)
    gates = Gates(pauses=pauses, inactive_domains=domains_by_status(domains, DomainStatus.INACTIVE))
    return Context(clusters, gates)


def assess_batch(
    batch: list[HostRow],
    context: Context,
    agents: AgentClient,
    cfg: TickConfig,
    clock: Clock,
) -> tuple[list[Any], list[Evaluation], BatchOutcome]:
    """Pull the reports a batch needs and evaluate every host; return (pulled, evaluations, outcome)."""
    now = clock()
    latest = {host.id: report for host, report, _ in batch}
    targets = [
        Target(host.id, host.agent_url)
        for host, report, _ in batch
        if needs_pull(report, cfg, now.timestamp())
    ]
    pull_started = time.perf_counter()
    pulled = agents.pull_reports(targets, now)
    pull_s = time.perf_counter() - pull_started
    for report in pulled:
        latest[report.host_id] = report
    now = clock()
    outcome = BatchOutcome(counts={"hosts": len(batch), "pulled": len(pulled), "pull_s": pull_s})
    decisions: dict[str, int] = {}
    observed = 0
    silent_ids: list[str] = []
    evaluations: list[Evaluation] = []
    for host, _, row in batch:
        cluster = context.clusters.get(host.cluster_id)
        if cluster is None:  # registered after this batch read the clusters
            continue
        ev = evaluate(
            host, latest[host.id], cluster, now, cfg.report_max_age_s, context.gates, row.get("in_flight_id")
        )
        evaluations.append(ev)
        if is_observed(host.status):
            observed += 1
            if ev.assessment.is_silent:
                silent_ids.append(host.id)
        if ev.decision.is_activate:
            outcome.candidates.append(
                {
                    "host_id": host.id,
                    "cluster_id": host.cluster_id,
                    "waiting_since": (ev.host.status_changed_at or now).isoformat(),
                    "code": ev.decision.code,
                    "detail": ev.decision.detail,
                }
            )
        else:
            decisions[ev.decision.code] = decisions.get(ev.decision.code, 0) + 1
        _log_transition(ev)
    outcome.counts.update(
        silent=len(silent_ids),
        silent_ids=silent_examples(silent_ids),
        observed=observed,
        decisions=decisions,
    )
    return pulled, evaluations, outcome


def _log_transition(ev: Evaluation) -> None:
    if ev.transition is None:
        return
    log.info(
        "host %s: %s -> %s (%s: %s)",
        ev.host.id,
        ev.transition.expected.value,
        ev.transition.status.value,
        ev.transition.reason,
        ev.transition.detail,
    )


def record_batch(
    conn: Conn,
    repos: Repos,
    batch: list[HostRow],
    pulled: list[Any],
    evaluations: list[Evaluation],
    now: datetime,
) -> int:
    """Store the pulled reports, the transitions and the decisions that changed; return transitions."""
    previous = {host.id: (row["last_decision"], row["last_decision_detail"]) for host, _, row in batch}
    # Only decisions that changed are written: a steady fleet writes none.
    settled = [
        ev.decision
        for ev in evaluations
        if not ev.decision.is_activate and previous[ev.host.id] != (ev.decision.code, ev.decision.detail)
    ]
    repos.hosts.upsert_reports(conn, pulled, now)
    changed = repos.hosts.apply_transitions(
        conn, [ev.transition for ev in evaluations if ev.transition], now, AUTO_ACTOR
    )
    repos.hosts.record_decisions(conn, settled, now)
    return len(changed)
