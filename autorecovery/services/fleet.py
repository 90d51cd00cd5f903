"""Operator-facing fleet services: registration, flags, maintenance, manual activation, plan."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.adapters.store.rows import report_as_dict
from autorecovery.services import Clock, Enqueuer
from autorecovery.services.host_view import hold_view
from autorecovery.services.safety import load_view, pause_as_dict, plan_hosts
from models.domain import Cluster, Host, HostStatus, Report, Trigger, effective_cluster
from models.errors import BadReport, BrokerUnavailable, Conflict, InvalidInput, NotFound
from models.policy import evaluate
from models.report import parse_report
from models.safety import FLEET, CapPolicy

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostSpec:
    """What registering a host takes."""

    id: str
    cluster: str
    agent_url: str


class FleetService:
    """The operations that the API and the CLI expose; each is one transaction."""

    def __init__(
        self,
        db: Database,
        enqueue: Enqueuer,
        *,
        report_max_age_s: float,
        clock: Clock,
        repos: Repos = PG_REPOS,
        caps: CapPolicy = CapPolicy(),  # noqa: B008 - frozen
    ) -> None:
        self.db = db
        self.repos = repos
        self.enqueue = enqueue
        self.report_max_age_s = report_max_age_s
        self.caps = caps
        self.clock = clock

    def register_cluster(self, cluster: Cluster, actor: str) -> bool:
        """Create or update a cluster; return True when created."""
        if cluster.id == FLEET:
            raise InvalidInput("id", f"{FLEET!r} is reserved (it names the fleet-wide pause)")
        now = self.clock()
        with self.db.transaction() as conn:
            created = self.repos.hosts.upsert_cluster(conn, cluster)
            for sd_id in self.repos.storage.ensure(conn, cluster.storage_domains, now):
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="storage_domain",
                    object_id=sd_id,
                    event="storage_domain_registered",
                    actor=actor,
                    details={"cluster": cluster.id},
                )
            self.repos.audit.add(
                conn,
                at=now,
                object_type="cluster",
                object_id=cluster.id,
                event="cluster_registered" if created else "cluster_updated",
                actor=actor,
                details={
                    "required_networks": sorted(cluster.required_networks),
                    "storage_domains": sorted(cluster.storage_domains),
                    "min_version": cluster.min_version,
                    "cpu_flags": sorted(cluster.cpu_flags),
                },
            )
        return bool(created)

    def register_hosts(self, specs: list[HostSpec], actor: str) -> list[str]:
        """Register hosts in one transaction: all of them or, on a bad one, none.

        Raises:
            InvalidInput: an unknown cluster, naming the host.
            Conflict: a host id already registered.
        """
        now = self.clock()
        created: list[str] = []
        with self.db.transaction() as conn:
            clusters = self.repos.hosts.all_clusters(conn)
            for spec in specs:
                if spec.cluster not in clusters:
                    raise InvalidInput("cluster", f"unknown cluster {spec.cluster!r} for host {spec.id!r}")
                if not self.repos.hosts.insert_host(conn, spec.id, spec.cluster, spec.agent_url, now):
                    raise Conflict(f"host {spec.id!r} is already registered", {"host_id": spec.id})
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="host",
                    object_id=spec.id,
                    event="host_registered",
                    actor=actor,
                    details={"cluster": spec.cluster, "agent_url": spec.agent_url},
                )
                created.append(spec.id)
        return created

    def set_agent_url(self, host_id: str, agent_url: str, actor: str) -> bool:
        """Point a host at another agent URL, audited; return True when it changed."""
        now = self.clock()
        with self.db.transaction() as conn:
            previous = self.repos.hosts.set_agent_url(conn, host_id, agent_url)
            if previous is None:
                raise NotFound("host", host_id)
            if previous == agent_url:
                return False
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="agent_url_changed",
                actor=actor,
                details={"from": previous, "to": agent_url},
            )
        return True

    def set_autorecovery(self, host_id: str, enabled: bool, actor: str) -> None:
        """Turn a host's autorecovery on or off, audited with the actor."""
        now = self.clock()
        with self.db.transaction() as conn:
            previous = self.repos.hosts.set_autorecovery(conn, host_id, enabled)
            if previous is None:
                raise NotFound("host", host_id)
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="autorecovery_enabled" if enabled else "autorecovery_disabled",
                actor=actor,
                details={"previous": previous, "enabled": enabled},
            )
        log.info("host %s: autorecovery %s by %s", host_id, "on" if enabled else "off", actor)

    def request_activation(self, host_id: str, actor: str) -> str:
        """Queue a manual activation; return its id, which is also the Celery task id.

        Raises:
            NotFound: unknown host.
            Conflict: the host is up, or another activation is queued or running.
        """
        now = self.clock()
        activation_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id, for_update=True)
            if loaded is None:
                raise NotFound("host", host_id)
            host = loaded[0]
            if host.status is HostStatus.UP:
                raise Conflict(f"host {host_id} is already up", {"status": host.status.value})
            running = self.repos.activations.in_flight(conn, host_id)
            if running is not None:
                raise Conflict(
                    f"host {host_id} is held by activation {running.id}", {"holder": running.as_dict()}
                )
            statuses = [s.value for s in HostStatus if s is not HostStatus.UP]
            created = self.repos.activations.create_many(
                conn,
                [(activation_id, host_id)],
                trigger=Trigger.MANUAL.value,
                actor=actor,
                now=now,
                statuses=statuses,
                reason="requested by an admin",
            )
            if not created:
                held = self.repos.activations.in_flight(conn, host_id)
                raise Conflict(
                    f"host {host_id} is held by another activation",
                    {"holder": held.as_dict() if held else None},
                )
        try:
            self.enqueue(activation_id, host_id, Trigger.MANUAL.value, actor)
        except BrokerUnavailable as exc:
            with self.db.transaction() as conn:
                self.repos.activations.mark_enqueue_failed(
                    conn, [(activation_id, host_id)], self.clock(), str(exc)
                )
            raise
        return activation_id

    def set_maintenance(self, host_id: str, actor: str, reason: str | None) -> None:
        """Take a host out of service by hand; monitoring never brings it back from there.

        Raises:
            Conflict: an activation is queued or running for the host.
        """
        now = self.clock()
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id, for_update=True)
            if loaded is None:
                raise NotFound("host", host_id)
            running = self.repos.activations.in_flight(conn, host_id)
            if running is not None:
                raise Conflict(
                    f"host {host_id} is held by activation {running.id}", {"holder": running.as_dict()}
                )
            self.repos.hosts.set_status(
                conn, host_id, HostStatus.MAINTENANCE.value, "maintenance", reason or "set by an admin", now
            )
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="status_changed",
                actor=actor,
                reason="maintenance",
                details={"from": loaded[0].status.value, "to": "maintenance", "detail": reason},
            )

    def plan(self, *, cluster_id: str | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
        """Say what the next tick would do for each host and why, from stored reports; no writes."""
        now = self.clock()
        with self.db.transaction() as conn:
            clusters = self.repos.hosts.all_clusters(conn)
            rows = self.repos.hosts.list_hosts(conn, cluster_id=cluster_id, limit=limit)
            view = load_view(conn, self.repos, now)
        return plan_hosts(rows, clusters, view, now, self.report_max_age_s, self.caps)

    def describe(self, host_id: str) -> dict[str, Any]:
        """Return a host with its latest assessment, last decision and recent attempts."""
        now = self.clock()
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
            if loaded is None:
                raise NotFound("host", host_id)
            host, report, row = loaded
            cluster = self.repos.hosts.get_cluster(conn, host.cluster_id)
            running = self.repos.activations.in_flight(conn, host_id)
            recent = self.repos.activations.recent(conn, host_id)
            view = load_view(conn, self.repos, now)
        assert cluster is not None
        cluster = effective_cluster(cluster, view.maintenance_domains)
        ev = evaluate(host, report, cluster, now, self.report_max_age_s, view.gates)
        why = {"code": ev.decision.code, "detail": ev.decision.detail}
        if ev.decision.is_activate and row["last_decision"] == "capped":
            why = {"code": "capped", "detail": row["last_decision_detail"]}
        return {
            "id": host.id,
            "cluster": host.cluster_id,
            "agent_url": host.agent_url,
            "status": host.status.value,
            "reason": host.reason,
            "detail": host.detail,
            "autorecovery": host.autorecovery,
            "status_changed_at": host.status_changed_at.isoformat() if host.status_changed_at else None,
            "report_age_s": ev.assessment.report_age_s,
            "report": report_as_dict(report) if report else None,
            "problems": [{"reason": p.reason.value, "detail": p.detail} for p in ev.assessment.problems],
            "last_decision": {
                "code": row["last_decision"],
                "detail": row["last_decision_detail"],
                "at": row["last_decision_at"].isoformat() if row["last_decision_at"] else None,
            },
            "why_not_recovered": None if host.status is HostStatus.UP else why,
            "holds": {
                "failures": host.failures,
                "next_attempt_at": host.next_attempt_at.isoformat() if host.next_attempt_at else None,
                "quarantined_at": host.quarantined_at.isoformat() if host.quarantined_at else None,
                "quarantine_reason": row.get("quarantine_reason"),
                "pause": (lambda p: pause_as_dict(p) if p else None)(
                    view.gates.pause_for(host.cluster_id, now)
                ),
                "observer_gate": view.gates.observer_block,
            },
            **hold_view(host, report, ev.assessment, row, view.gates, now),
            "activation": running.as_dict() if running else None,
            "recent_activations": [a.as_dict() for a in recent],
        }

    # -- Queries and audited operations for the HTTP API ------------------------------------

    def list_hosts(
        self,
        *,
        status: str | None = None,
        cluster_id: str | None = None,
        autorecovery: bool | None = None,
        limit: int = 100,
        after: str = "",
    ) -> list[dict[str, Any]]:
        """Return hosts matching the filters, ordered by id, at most ``limit`` after ``after``."""
        now = self.clock()
        with self.db.transaction() as conn:
            rows = self.repos.hosts.list_hosts(
                conn,
                status=status,
                cluster_id=cluster_id,
                autorecovery=autorecovery,
                limit=limit,
                after=after,
            )
        return [host_summary(host, report, row, now) for host, report, row in rows]

    def list_clusters(self) -> list[dict[str, Any]]:
        """Return every cluster in its registration shape, ordered by id."""
        with self.db.transaction() as conn:
            clusters = self.repos.hosts.all_clusters(conn)
        return [cluster_as_dict(c) for c in clusters.values()]

    def get_cluster(self, cluster_id: str) -> dict[str, Any]:
        """Return one cluster in its registration shape.

        Raises:
            NotFound: unknown cluster.
        """
        with self.db.transaction() as conn:
            cluster = self.repos.hosts.get_cluster(conn, cluster_id)
        if cluster is None:
            raise NotFound("cluster", cluster_id)
        return cluster_as_dict(cluster)

    def audit_log(
        self,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        actor: str | None = None,
        event: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return audit entries matching the filters, newest first, ``limit`` below ``before_id``."""
        with self.db.transaction() as conn:
            rows = self.repos.audit.query(
                conn,
                object_type=object_type,
                object_id=object_id,
                actor=actor,
                event=event,
                since=since,
                before_id=before_id,
                limit=limit,
            )
        return [{**row, "at": row["at"].isoformat()} for row in rows]

    def delete_host(self, host_id: str, actor: str) -> None:
        """Forget a host (its report and activations go with it; its audit entries stay).

        Raises:
            NotFound: unknown host.
            Conflict: an activation is queued or running for the host (``holder``).
        """
        now = self.clock()
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id, for_update=True)
            if loaded is None:
                raise NotFound("host", host_id)
            running = self.repos.activations.in_flight(conn, host_id)
            if running is not None or not self.repos.hosts.delete_host(conn, host_id):
                raise Conflict(
                    f"host {host_id} is held by an activation; delete it once that ends",
                    {"holder": running.as_dict() if running else None},
                )
            host = loaded[0]
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="host_deleted",
                actor=actor,
                details={
                    "cluster": host.cluster_id,
                    "agent_url": host.agent_url,
                    "status": host.status.value,
                },
            )
        log.info("host %s: deleted by %s", host_id, actor)

    def activate(self, host_id: str, actor: str) -> str:
        """Queue a manual activation like ``request_activation``, auditing a refusal.

        Raises:
            NotFound: unknown host.
            Conflict: the host is up (``status``) or held by another activation (``holder``);
                an ``activation_refused`` entry records who asked and who held the host.
        """
        try:
            return self.request_activation(host_id, actor)
        except Conflict as exc:
            holder = exc.details.get("holder")
            details: dict[str, Any] = {"message": str(exc)}
            if isinstance(holder, dict):
                details.update(
                    holder_id=holder.get("id"),
                    holder_actor=holder.get("actor"),
                    holder_trigger=holder.get("trigger"),
                )
            reason = "activation_in_flight" if "holder" in exc.details else "already_up"
            with self.db.transaction() as conn:
                self.repos.audit.add(
                    conn,
                    at=self.clock(),
                    object_type="host",
                    object_id=host_id,
                    event="activation_refused",
                    actor=actor,
                    reason=reason,
                    details=details,
                )
            log.info("host %s: manual activation by %s refused: %s", host_id, actor, exc)
            raise

    def activation(self, activation_id: str) -> dict[str, Any] | None:
        """Return one activation record, or None."""
        with self.db.transaction() as conn:
            row = self.repos.activations.get(conn, activation_id)
        return row.as_dict() if row else None

    def receive_report(self, host_id: str, body: object, actor: str) -> tuple[Report, bool]:
        """Validate and store a pushed report; audit a rejected one (in its own transaction).

        Returns:
            The report, and whether it was stored (an older report than the stored one is not).

        Raises:
            NotFound: unknown host.
            BadReport: naming the field; nothing is stored, a ``report_rejected`` entry is.
        """
        now = self.clock()
        with self.db.transaction() as conn:
            if self.repos.hosts.get_host(conn, host_id) is None:
                raise NotFound("host", host_id)
        try:
            report = parse_report(body, host_id, source="push")
        except BadReport as rejected:
            # parse_report quotes the body's keys escaped: safe to store and to print.
            with self.db.transaction() as conn:
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="host",
                    object_id=host_id,
                    event="report_rejected",
                    actor=actor,
                    reason=rejected.field,
                    details={"field": rejected.field, "message": rejected.message, "source": "push"},
                )
            log.warning("host %s: pushed report rejected (%s): %s", host_id, actor, rejected)
            raise
        with self.db.transaction() as conn:
            stored = self.repos.hosts.upsert_reports(conn, [report], now)
        return report, stored == 1

    def counts(self) -> dict[str, Any]:
        """Return hosts by status and activations by trigger and outcome, for metrics."""
        with self.db.transaction() as conn:
            hosts = self.repos.hosts.count_by_status(conn)
            activations = self.repos.activations.count_by_outcome(conn)
        return {"hosts_by_status": hosts, "activations": activations}


def cluster_as_dict(cluster: Cluster) -> dict[str, Any]:
    """Present a cluster in its registration shape (agent protocol v1)."""
    return {
        "id": cluster.id,
        "required_networks": sorted(cluster.required_networks),
        "storage_domains": sorted(cluster.storage_domains),
        "min_version": cluster.min_version,
        "cpu_flags": sorted(cluster.cpu_flags),
    }


def host_summary(host: Host, report: Report | None, row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Present a host in a list: its status, flag, report age and last decision code."""
    return {
        "id": host.id,
        "cluster": host.cluster_id,
        "agent_url": host.agent_url,
        "status": host.status.value,
        "reason": host.reason,
        "detail": host.detail,
        "autorecovery": host.autorecovery,
        "status_changed_at": host.status_changed_at.isoformat() if host.status_changed_at else None,
        "report_age_s": (now - report.reported_at).total_seconds() if report else None,
        "in_flight": host.in_flight,
        "last_decision": row.get("last_decision"),
    }
