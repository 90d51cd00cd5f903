"""Operator commands on the fleet: registration, flags, maintenance, manual activation, reports.

Each command is one transaction, audited with its actor. Reads are in ``services/views.py``.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.services import Clock, Enqueuer
from autorecovery.services.audit import Trail
from autorecovery.services.views import cluster_as_dict
from models.agent_url import AgentUrlPolicy
from models.assessment import Problem, assess
from models.domain import (
    SILENT_REASONS,
    Cluster,
    DomainStatus,
    HostStatus,
    Report,
    Trigger,
    domains_by_status,
    effective_cluster,
)
from models.errors import BadReport, BrokerUnavailable, Conflict, InvalidInput, NotFound
from models.report import DEFAULT_MAX_SKEW_S
from models.report_wire import decode_report
from models.safety import FLEET

if TYPE_CHECKING:
    from datetime import datetime

    from autorecovery.adapters.store.db import Conn
    from autorecovery.ports import HostRow
    from autorecovery.ports.rows import ActivationRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostSpec:
    """What registering a host takes."""

    id: str
    cluster: str
    agent_url: str
    #: The first clean report marks the host up without an init (an existing, healthy host).
    adopt: bool = False


def _held(host_id: str, holder: ActivationRow | None) -> Conflict:
    return Conflict(
        f"host {host_id} is held by activation {holder.id if holder else 'another'}",
        {"holder": holder.as_dict() if holder else None},
    )


def _problems_json(problems: list[Problem]) -> list[dict[str, str | None]]:
    return [{"reason": p.reason.value, "detail": p.detail} for p in problems]


class FleetService:
    """The commands that the API and the CLI expose; each is one transaction."""

    def __init__(
        self,
        db: Database,
        enqueue: Enqueuer,
        *,
        report_max_age_s: float,
        clock: Clock,
        repos: Repos = PG_REPOS,
        max_clock_skew_s: float = DEFAULT_MAX_SKEW_S,
        agent_urls: AgentUrlPolicy | None = None,
    ) -> None:
        self.db = db
        self.max_clock_skew_s = max_clock_skew_s
        self.agent_urls = agent_urls
        self.repos = repos
        self.enqueue = enqueue
        self.report_max_age_s = report_max_age_s
        self.clock = clock

    def register_cluster(self, cluster: Cluster, actor: str) -> bool:
        """Create or update a cluster; return True when created."""
        if cluster.id == FLEET:
            raise InvalidInput("id", f"{FLEET!r} is reserved (it names the fleet-wide pause)")
        now = self.clock()
        with self.db.transaction() as conn:
            trail = Trail(self.repos, conn, now, actor)
            created = self.repos.hosts.upsert_cluster(conn, cluster)
            for sd_id in self.repos.storage.ensure(conn, cluster.storage_domains, now):
                trail.storage_domain(sd_id, "storage_domain_registered", {"cluster": cluster.id})
            event = "cluster_registered" if created else "cluster_updated"
            trail.cluster(cluster.id, event, {k: v for k, v in cluster_as_dict(cluster).items() if k != "id"})
        return bool(created)

    def _check_url(self, agent_url: str) -> None:
        # None only in unit tests with placeholder URLs: the API and the CLI pass the policy.
        if self.agent_urls is not None:
            self.agent_urls.check_url(agent_url)

    def register_hosts(self, specs: list[HostSpec], actor: str) -> list[str]:
        """Register hosts in one transaction: all of them or, on a bad one, none.

        Raises:
            InvalidInput: an unknown cluster, naming the host; an agent URL the policy refuses.
            Conflict: a host id already registered.
        """
        for spec in specs:
            self._check_url(spec.agent_url)
        now = self.clock()
        with self.db.transaction() as conn:
            clusters = self.repos.hosts.all_clusters(conn)
            for spec in specs:
                if spec.cluster not in clusters:
                    raise InvalidInput("cluster", f"unknown cluster {spec.cluster!r} for host {spec.id!r}")
                if not self.repos.hosts.insert_host(
                    conn, spec.id, spec.cluster, spec.agent_url, now, adopt=spec.adopt
                ):
                    raise Conflict(f"host {spec.id!r} is already registered", {"host_id": spec.id})
                details = {"cluster": spec.cluster, "agent_url": spec.agent_url, "adopt": spec.adopt}
                Trail(self.repos, conn, now, actor).host(spec.id, "host_registered", details)
        return [spec.id for spec in specs]

    def set_agent_url(self, host_id: str, agent_url: str, actor: str) -> bool:
        """Point a host at another agent URL, audited; return True when it changed."""
        self._check_url(agent_url)
        now = self.clock()
        with self.db.transaction() as conn:
            previous = self.repos.hosts.set_agent_url(conn, host_id, agent_url)
            if previous is None:
                raise NotFound("host", host_id)
            if previous == agent_url:
                return False
            details = {"from": previous, "to": agent_url}
            Trail(self.repos, conn, now, actor).host(host_id, "agent_url_changed", details)
        return True

    def set_autorecovery(self, host_id: str, enabled: bool, actor: str) -> None:
        """Turn a host's autorecovery on or off, audited with the actor and the previous value."""
        now = self.clock()
        with self.db.transaction() as conn:
            previous = self.repos.hosts.set_autorecovery(conn, host_id, enabled)
            if previous is None:
                raise NotFound("host", host_id)
            event = "autorecovery_enabled" if enabled else "autorecovery_disabled"
            Trail(self.repos, conn, now, actor).host(
                host_id, event, {"previous": previous, "enabled": enabled}
            )
        log.info("host %s: autorecovery %s by %s", host_id, "on" if enabled else "off", actor)

    def request_activation(self, host_id: str, actor: str, *, force: bool = False) -> str:
        """Queue a manual activation; return its id, which is also the Celery task id.

        Raises:
            NotFound: unknown host.
            Conflict: the host is up (``status``), another activation is queued or running
                (``holder``), or, without ``force``, its fresh report shows ``problems``.
        """
        now = self.clock()
        activation_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            loaded = self._load_for_update(conn, host_id)
            if loaded.host.status is HostStatus.UP:
                raise Conflict(f"host {host_id} is already up", {"status": loaded.host.status.value})
            running = self.repos.activations.in_flight(conn, host_id)
            if running is not None:
                raise _held(host_id, running)
            problems = self._fresh_problems(conn, loaded, now)
            if problems and not force:
                shown = "; ".join(f"{p.reason.value} ({p.detail})" for p in problems)
                raise Conflict(
                    f"host {host_id}'s fresh report shows {shown}; force to init it anyway",
                    {"problems": _problems_json(problems)},
                )
            self._queue(conn, activation_id, host_id, actor, now, problems)
        try:
            self.enqueue(activation_id, host_id, Trigger.MANUAL.value, actor)
        except BrokerUnavailable as exc:
            with self.db.transaction() as conn:
                self.repos.activations.mark_enqueue_failed(
                    conn, [(activation_id, host_id)], self.clock(), str(exc)
                )
            raise
        return activation_id

    def _load_for_update(self, conn: Conn, host_id: str) -> HostRow:
        loaded = self.repos.hosts.get_host(conn, host_id, for_update=True)
        if loaded is None:
            raise NotFound("host", host_id)
        return loaded

    def _fresh_problems(self, conn: Conn, loaded: HostRow, now: datetime) -> list[Problem]:
        """What the host's fresh report shows wrong (nothing when there is no fresh report)."""
        cluster = self.repos.hosts.get_cluster(conn, loaded.host.cluster_id)
        if cluster is None:
            return []
        maintenance = domains_by_status(self.repos.storage.all_domains(conn), DomainStatus.MAINTENANCE)
        found = assess(loaded.report, effective_cluster(cluster, maintenance), now, self.report_max_age_s)
        # A silent host (no report, stale, unanswered, unreadable) shows nothing of itself: an init
        # is how an admin finds out, so only a fresh report's problems ask for force.
        # What the host's own init repairs (a stopped pool or network) needs no force either.
        return [p for p in found.problems if p.reason not in SILENT_REASONS and not p.repairable]

    def _queue(
        self, conn: Conn, activation_id: str, host_id: str, actor: str, now: datetime, problems: list[Problem]
    ) -> None:
        statuses = [s.value for s in HostStatus if s is not HostStatus.UP]
        reason = "forced by an admin despite problems" if problems else "requested by an admin"
        created = self.repos.activations.create_many(
            conn,
            [(activation_id, host_id)],
            trigger=Trigger.MANUAL.value,
            actor=actor,
            now=now,
            statuses=statuses,
            reason=reason,
        )
        if not created:
            raise _held(host_id, self.repos.activations.in_flight(conn, host_id))
        if problems:
            details = {"activation_id": activation_id, "problems": _problems_json(problems)}
            Trail(self.repos, conn, now, actor).host(
                host_id, "activation_forced", details, reason="host_has_problems"
            )
            log.warning("host %s: activation forced by %s despite %s", host_id, actor, details["problems"])

    def set_maintenance(self, host_id: str, actor: str, reason: str | None) -> None:
        """Take a host out of service by hand; monitoring never brings it back from there.

        Raises:
            Conflict: an activation is queued or running for the host.
        """
        now = self.clock()
        with self.db.transaction() as conn:
            loaded = self._load_for_update(conn, host_id)
            running = self.repos.activations.in_flight(conn, host_id)
            if running is not None:
                raise _held(host_id, running)
            self.repos.hosts.set_status(
                conn, host_id, HostStatus.MAINTENANCE.value, "maintenance", reason or "set by an admin", now
            )
            details = {"from": loaded.host.status.value, "to": "maintenance", "detail": reason}
            Trail(self.repos, conn, now, actor).host(host_id, "status_changed", details, reason="maintenance")

    def delete_host(self, host_id: str, actor: str) -> None:
        """Forget a host (its report and activations go with it; its audit entries stay).

        Raises:
            NotFound: unknown host.
            Conflict: an activation is queued or running for the host (``holder``).
        """
        now = self.clock()
        with self.db.transaction() as conn:
            host = self._load_for_update(conn, host_id).host
            running = self.repos.activations.in_flight(conn, host_id)
            if running is not None or not self.repos.hosts.delete_host(conn, host_id):
                raise Conflict(
                    f"host {host_id} is held by an activation; delete it once that ends",
                    {"holder": running.as_dict() if running else None},
                )
            details = {"cluster": host.cluster_id, "agent_url": host.agent_url, "status": host.status.value}
            Trail(self.repos, conn, now, actor).host(host_id, "host_deleted", details)
        log.info("host %s: deleted by %s", host_id, actor)

    def activate(self, host_id: str, actor: str, *, force: bool = False) -> str:
        """Queue a manual activation like ``request_activation``, auditing a refusal.

        Raises:
            NotFound: unknown host.
            Conflict: as ``request_activation``; an ``activation_refused`` entry records who
                asked and why (the holder, or the problems).
        """
        try:
            return self.request_activation(host_id, actor, force=force)
        except Conflict as exc:
            self._audit_refusal(host_id, actor, exc)
            raise

    def _audit_refusal(self, host_id: str, actor: str, exc: Conflict) -> None:
        details: dict[str, Any] = {"message": str(exc)}
        holder = exc.details.get("holder")
        if isinstance(holder, dict):
            details |= {f"holder_{k}": holder.get(k) for k in ("id", "actor", "trigger")}
        reason = "activation_in_flight" if "holder" in exc.details else "already_up"
        if "problems" in exc.details:
            details["problems"], reason = exc.details["problems"], "host_has_problems"
        with self.db.transaction() as conn:
            Trail(self.repos, conn, self.clock(), actor).host(
                host_id, "activation_refused", details, reason=reason
            )
        log.info("host %s: manual activation by %s refused: %s", host_id, actor, exc)

    def receive_report(self, host_id: str, body: object, actor: str) -> tuple[Report, bool]:
        """Validate and store a pushed report; audit a rejected one (in its own transaction).

        ``body`` is the raw request body (bytes), decoded by the report's one schema
        (``models.report_wire.ReportWire``); an already decoded body is encoded back first. A
        good report of a known host costs one statement in one round trip (and the pool's
        check); the host is looked up only when nothing was stored.

        Returns:
            The report, and whether it was stored (an older report than the stored one is not).

        Raises:
            NotFound: unknown host.
            BadReport: naming the field; nothing is stored, a ``report_rejected`` entry is.
        """
        now = self.clock()
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            report = decode_report(raw, host_id, now=now, max_skew_s=self.max_clock_skew_s, source="push")
        except BadReport as rejected:
            self._require_host(host_id)
            # The validators quote the body's keys escaped: safe to store and to print.
            details = {"field": rejected.field, "message": rejected.message, "source": "push"}
            with self.db.transaction() as conn:
                trail = Trail(self.repos, conn, now, actor)
                trail.host(host_id, "report_rejected", details, reason=rejected.field)
            log.warning("host %s: pushed report rejected (%s): %s", host_id, actor, rejected)
            raise
        with self.db.held() as held:
            with self.db.pipeline(held) as conn:
                stored = self.repos.hosts.queue_reports(conn, [report], now)
            if stored() == 1:
                return report, True
        self._require_host(host_id)  # nothing stored: an unknown host, or an older report
        return report, False

    def _require_host(self, host_id: str) -> None:
        with self.db.transaction() as conn:
            if not self.repos.hosts.existing_ids(conn, [host_id]):
                raise NotFound("host", host_id)
