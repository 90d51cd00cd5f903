"""One batch of a tick: pull, store, transition and decide, in a constant number of statements."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from autorecovery.adapters.agents import AgentClient, Target
from autorecovery.adapters.store import Repos
from autorecovery.adapters.store.db import Conn
from autorecovery.ports import HostState
from autorecovery.ports.rows import BatchHost, Evaluated, HostRow, SettledCount
from autorecovery.services import Clock
from autorecovery.services.monitoring.config import TickConfig, needs_pull_of
from models import changes
from models.domain import (
    Cluster,
    DomainStatus,
    Host,
    HostStatus,
    Report,
    domains_by_status,
    effective_cluster,
)
from models.policy import Evaluation, evaluate
from models.safety import Gates, Pause, is_observed, silent_examples

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

    @property
    def key(self) -> str:
        """The hash of this context, part of every evaluation's key (``models.changes``)."""
        return changes.context_key(self.clusters, self.gates)

    def as_json(self) -> dict[str, Any]:
        """The context as the tick keeps it for its batches."""
        return {
            "clusters": [
                {
                    "id": c.id,
                    "required_networks": sorted(c.required_networks),
                    "storage_domains": sorted(c.storage_domains),
                    "min_version": c.min_version,
                    "cpu_flags": sorted(c.cpu_flags),
                }
                for c in self.clusters.values()
            ],
            "pauses": [
                {
                    "scope": p.scope,
                    "reason": p.reason,
                    "owner": p.owner,
                    "created_at": p.created_at.isoformat(),
                    "expires_at": p.expires_at.isoformat() if p.expires_at else None,
                }
                for p in self.gates.pauses.values()
            ],
            "observer_block": self.gates.observer_block,
            "inactive_domains": sorted(self.gates.inactive_domains),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Context:
        """The context a tick kept (``as_json``)."""
        clusters = {
            c["id"]: Cluster(
                id=c["id"],
                required_networks=frozenset(c["required_networks"]),
                storage_domains=frozenset(c["storage_domains"]),
                min_version=c["min_version"],
                cpu_flags=frozenset(c["cpu_flags"]),
            )
            for c in data["clusters"]
        }
        pauses = {
            p["scope"]: Pause(
                scope=p["scope"],
                reason=p["reason"],
                owner=p["owner"],
                created_at=datetime.fromisoformat(p["created_at"]),
                expires_at=datetime.fromisoformat(p["expires_at"]) if p["expires_at"] else None,
            )
            for p in data["pauses"]
        }
        gates = Gates(
            pauses=pauses,
            observer_block=data["observer_block"],
            inactive_domains=frozenset(data["inactive_domains"]),
        )
        return cls(clusters, gates)


def load_context(conn: Conn, repos: Repos, now: datetime) -> Context:
    """Read the clusters (domains in maintenance left out), the pauses and the inactive domains."""
    domains = repos.storage.all_domains(conn)
    maintenance = domains_by_status(domains, DomainStatus.MAINTENANCE)
    clusters = {cid: effective_cluster(c, maintenance) for cid, c in repos.hosts.all_clusters(conn).items()}
    pauses = repos.safety.active_pauses(conn, now)
    gates = Gates(pauses=pauses, inactive_domains=domains_by_status(domains, DomainStatus.INACTIVE))
    return Context(clusters, gates)


@dataclass
class Assessed:
    """A batch after its pull and evaluation: what to write, and what it found."""

    #: Pulled reports with something new for the policy (stored whole), and those with nothing
    #: new (only their time and counts are written, as staleness needs).
    changed_reports: list[Report] = field(default_factory=list)
    same_reports: list[tuple[Report, str]] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    #: The whole rows of the hosts evaluated (what their decisions were before).
    rows: list[HostRow] = field(default_factory=list)
    evaluated: list[Evaluated] = field(default_factory=list)
    outcome: BatchOutcome = field(default_factory=BatchOutcome)


@dataclass
class _Tally:
    """A batch's counts: decisions by code, hosts observed, and the silent ones among them."""

    decisions: dict[str, int] = field(default_factory=dict)
    observed: int = 0
    silent: int = 0
    silent_ids: list[str] = field(default_factory=list)

    def add(self, code: str | None, hosts: int, observed: int, silent: int, silent_ids: list[str]) -> None:
        if code is not None:
            self.decisions[code] = self.decisions.get(code, 0) + hosts
        self.observed += observed
        self.silent += silent
        if silent_ids:
            self.silent_ids = silent_examples(self.silent_ids, silent_ids)


def _pull(
    batch: list[BatchHost], agents: AgentClient, cfg: TickConfig, now: datetime
) -> tuple[dict[str, Report], float]:
    """Pull the reports the batch needs (pushed ones are not pulled); return them by host."""
    now_s = now.timestamp()
    targets = [
        Target(host.id, host.agent_url)
        for host in batch
        if needs_pull_of(host.report_source, host.report_reported_at, cfg, now_s)
    ]
    started = time.perf_counter()
    pulled = agents.pull_reports(targets, now)
    return {report.host_id: report for report in pulled}, time.perf_counter() - started


def assess_batch(
    batch: list[BatchHost],
    settled: list[SettledCount],
    context: Context,
    context_key: str | None,
    agents: AgentClient,
    cfg: TickConfig,
    clock: Clock,
    load: Callable[[list[str]], list[HostRow]],
    digests: changes.ReportDigests | None = None,
) -> Assessed:
    """Pull the reports a batch needs and evaluate every host whose inputs changed.

    ``batch`` holds the hosts the store could not tell settled; ``settled`` counts the others
    by the decision they hold. A pulled report that brings nothing new to a host whose last
    evaluation holds is counted as that evaluation, as the store counts the settled hosts.
    The hosts to evaluate again are read whole by ``load`` (their ids), after the pull.
    ``digests`` remembers each host's last report digest (the process's, across ticks).
    """
    digest_of = changes.report_digest if digests is None else digests.digest
    pulled, pull_s = _pull(batch, agents, cfg, clock())
    now = clock()
    found = Assessed()
    found.outcome.counts = {
        "hosts": len(batch) + sum(s.hosts for s in settled),
        "pulled": len(pulled),
        "pull_s": pull_s,
    }
    tally = _Tally()
    for count in settled:
        tally.add(count.code, count.hosts, count.observed, count.silent, count.silent_ids)
    again: dict[str, tuple[Report, str] | None] = {}  # to evaluate again: pulled report and digest
    for host in batch:
        if host.cluster_id not in context.clusters:  # registered after the tick read the clusters
            continue
        digest, fresh, pulled_now = host.report_digest, pulled.get(host.id), None
        if fresh is not None:
            digest = digest_of(fresh)
            pulled_now = (fresh, digest)
            if host.report_reported_at is not None and digest == host.report_digest:
                found.same_reports.append(pulled_now)
            else:
                found.changed_reports.append(fresh)
        key = None
        if context_key is not None and host.host_key is not None:
            key = changes.evaluation_key(host.host_key, digest, context_key)
        reported_at = fresh.reported_at if fresh is not None else host.report_reported_at
        if _holds(key, host, reported_at, now, cfg):
            counted = is_observed(HostStatus(host.status))
            silent = counted and bool(host.eval_silent)
            tally.add(host.eval_code, 1, counted, silent, [host.id] if silent else [])
        else:
            again[host.id] = pulled_now
    if again:
        _evaluate_again(found, tally, load(list(again)), again, context, context_key, now, cfg)
    found.outcome.counts.update(
        evaluated=len(found.evaluations),
        silent=tally.silent,
        silent_ids=tally.silent_ids,
        observed=tally.observed,
        decisions=tally.decisions,
    )
    return found


def _evaluate_again(
    found: Assessed,
    tally: _Tally,
    rows: list[HostRow],
    pulled: dict[str, tuple[Report, str] | None],
    context: Context,
    context_key: str | None,
    now: datetime,
    cfg: TickConfig,
) -> None:
    """Evaluate the hosts whose last evaluation did not hold, from their whole rows.

    A row read after the pull may be newer than what the batch read before it: its own key is
    the one kept, so a host changed meanwhile is evaluated again at the next tick at worst.
    """
    for row in rows:
        host, stored, state = row
        cluster = context.clusters.get(host.cluster_id)
        if cluster is None:
            continue
        fresh = pulled.get(host.id)
        report, digest = (stored, state["report_digest"]) if fresh is None else fresh
        key = None
        if context_key is not None and state["host_key"] is not None:
            key = changes.evaluation_key(state["host_key"], digest, context_key)
        found.rows.append(row)
        ev = _evaluate(found, host, report, cluster, context, key, state, now, cfg)
        counted = is_observed(host.status)
        silent = counted and ev.assessment.is_silent
        code = None if ev.decision.is_activate else ev.decision.code
        tally.add(code, 1, counted, silent, [host.id] if silent else [])


def _evaluate(
    found: Assessed,
    host: Host,
    report: Report | None,
    cluster: Cluster,
    context: Context,
    key: str | None,
    state: HostState,
    now: datetime,
    cfg: TickConfig,
) -> Evaluation:
    """Evaluate one host; keep its evaluation (keyed while it holds) and its candidacy."""
    ev = evaluate(host, report, cluster, now, cfg.report_max_age_s, context.gates, state.get("in_flight_id"))
    found.evaluations.append(ev)
    until = changes.valid_until(ev.host, context.gates, now, ev.assessment, ev.decision)
    holds = key is not None and until is not None and changes.is_fresh(report, now, cfg.report_max_age_s)
    found.evaluated.append(
        Evaluated(host.id, key if holds else None, until, ev.decision.code, ev.assessment.is_silent)
    )
    if ev.decision.is_activate:
        found.outcome.candidates.append(
            {
                "host_id": host.id,
                "cluster_id": host.cluster_id,
                "waiting_since": (ev.host.status_changed_at or now).isoformat(),
                "code": ev.decision.code,
                "detail": ev.decision.detail,
            }
        )
    _log_transition(ev)
    return ev


def _holds(
    key: str | None, host: BatchHost, reported_at: datetime | None, now: datetime, cfg: TickConfig
) -> bool:
    """True when the host's last evaluation still holds (same key, its time not run out, fresh)."""
    until = host.eval_until
    return (
        key is not None
        and key == host.eval_key
        and host.eval_code is not None
        and until is not None
        and until > now
        and changes.is_fresh_at(reported_at, now, cfg.report_max_age_s)
    )


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


def record_batch(conn: Conn, repos: Repos, found: Assessed, now: datetime) -> Callable[[], int]:
    """Send what a batch found to the store; return a function reading how many transitions were applied.

    Nothing is read until that function is called: in a pipeline, one round trip.
    """
    previous = {
        host.id: (state["last_decision"], state["last_decision_detail"]) for host, _, state in found.rows
    }
    # Only decisions that changed are written: a steady fleet writes none.
    settled = [
        ev.decision
        for ev in found.evaluations
        if not ev.decision.is_activate and previous[ev.host.id] != (ev.decision.code, ev.decision.detail)
    ]
    repos.hosts.queue_reports(conn, found.changed_reports, now)  # its count is not read
    repos.hosts.touch_reports(conn, found.same_reports, now)
    repos.hosts.record_decisions(conn, settled, now)
    repos.hosts.record_evaluations(conn, found.evaluated)
    changed = repos.hosts.queue_transitions(
        conn, [ev.transition for ev in found.evaluations if ev.transition], now, AUTO_ACTOR
    )
    return lambda: len(changed())
