"""Read views for the API and the CLI: hosts, clusters, the plan, the audit log; no writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.adapters.store.rows import report_as_dict
from autorecovery.ports import HostRow, HostState
from autorecovery.services import Clock
from autorecovery.services.host_view import hold_view
from autorecovery.services.safety import SafetyView, load_view, pause_as_dict, plan_hosts
from models.agent_url import redact_url
from models.domain import Cluster, Host, HostStatus, Report, effective_cluster
from models.errors import NotFound
from models.policy import Evaluation, Skip, evaluate
from models.safety import CapPolicy, host_holds


class FleetViews:
    """Queries over the fleet, each in one read transaction."""

    def __init__(
        self,
        db: Database,
        *,
        report_max_age_s: float,
        clock: Clock,
        repos: Repos = PG_REPOS,
        caps: CapPolicy = CapPolicy(),  # noqa: B008 - frozen
    ) -> None:
        self.db = db
        self.repos = repos
        self.report_max_age_s = report_max_age_s
        self.caps = caps
        self.clock = clock

    def plan(self, *, cluster_id: str | None = None, limit: int = 10_000) -> list[dict[str, Any]]:
        """Say what the next tick would do for each host and why, from stored reports."""
        now = self.clock()
        with self.db.transaction() as conn:
            clusters = self.repos.hosts.all_clusters(conn)
            rows = self.repos.hosts.list_hosts(conn, cluster_id=cluster_id, limit=limit)
            view = load_view(conn, self.repos, now)
        return plan_hosts(rows, clusters, view, now, self.report_max_age_s, self.caps)

    def describe(self, host_id: str) -> dict[str, Any]:
        """Return a host with its latest assessment, last decision and recent attempts.

        Raises:
            NotFound: unknown host.
        """
        now = self.clock()
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
            if loaded is None:
                raise NotFound("host", host_id)
            cluster = self.repos.hosts.get_cluster(conn, loaded.host.cluster_id)
            running = self.repos.activations.in_flight(conn, host_id)
            recent = self.repos.activations.recent(conn, host_id)
            steps = self.repos.activations.steps(conn, [a.id for a in recent])
            view = load_view(conn, self.repos, now)
        if cluster is None:
            raise NotFound("cluster", loaded.host.cluster_id)
        cluster = effective_cluster(cluster, view.maintenance_domains)
        ev = evaluate(loaded.host, loaded.report, cluster, now, self.report_max_age_s, view.gates)
        return {
            **host_detail(loaded, ev, now),
            "holds": holds(loaded, view, now),
            **hold_view(loaded.host, loaded.report, ev.assessment, loaded.state, view.gates, now),
            "activation": running.as_dict() if running else None,
            "recent_activations": [
                {**a.as_dict(), "steps": [s.as_dict() for s in steps if s.activation_id == a.id]}
                for a in recent
            ],
        }

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
        return [host_summary(row.host, row.report, row.state, now) for row in rows]

    def cluster_health(self) -> list[dict[str, Any]]:
        """Return each cluster's hosts, how many are up, its cap and the activations in flight.

        Like Cluster API's MachineHealthCheck status: "healthy N of M", and the most activations
        the tick runs at once there (``limit``).
        """
        with self.db.transaction() as conn:
            clusters = self.repos.hosts.all_clusters(conn)
            sizes = self.repos.safety.cluster_sizes(conn)
            up = self.repos.safety.up_by_cluster(conn)
            in_flight = self.repos.safety.in_flight_by_cluster(conn)
        return [
            {
                "cluster": c,
                "hosts": sizes.get(c, 0),
                "up": up.get(c, 0),
                "limit": self.caps.cluster_limit(sizes.get(c, 1)),
                "in_flight": in_flight.get(c, 0),
            }
            for c in clusters
        ]

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

    def activation(self, activation_id: str) -> dict[str, Any] | None:
        """Return one activation record, or None."""
        with self.db.transaction() as conn:
            row = self.repos.activations.get(conn, activation_id)
        return row.as_dict() if row else None

    def counts(self) -> dict[str, Any]:
        """Return hosts by status and activations by trigger and outcome, for metrics."""
        with self.db.transaction() as conn:
            hosts = self.repos.hosts.count_by_status(conn)
            activations = self.repos.activations.count_by_outcome(conn)
        return {"hosts_by_status": hosts, "activations": activations}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def cluster_as_dict(cluster: Cluster) -> dict[str, Any]:
    """Present a cluster in its registration shape (agent protocol v1)."""
    return {
        "id": cluster.id,
        "required_networks": sorted(cluster.required_networks),
        "storage_domains": sorted(cluster.storage_domains),
        "min_version": cluster.min_version,
        "cpu_flags": sorted(cluster.cpu_flags),
    }


def _host_fields(host: Host) -> dict[str, Any]:
    return {
        "id": host.id,
        "cluster": host.cluster_id,
        # A row stored before credentials in URLs were refused is never called, and never shown.
        "agent_url": redact_url(host.agent_url),
        "status": host.status.value,
        "reason": host.reason,
        "detail": host.detail,
        "autorecovery": host.autorecovery,
        "status_changed_at": _iso(host.status_changed_at),
    }


def host_summary(host: Host, report: Report | None, state: HostState, now: datetime) -> dict[str, Any]:
    """Present a host in a list: its status, flag, report age and last decision code."""
    return {
        **_host_fields(host),
        "report_age_s": heard_age_s(state, now),
        "in_flight": host.in_flight,
        "last_decision": state["last_decision"],
        "holds": list(host_holds(host, now, report.state_unwritable if report else None)),
    }


def heard_age_s(state: HostState, now: datetime) -> float | None:
    """Seconds since the host's agent last answered with a usable report (None: never).

    A failed pull stores an observation dated at the attempt: counting from it would make a host
    whose agent has been silent for an hour look one tick old.
    """
    heard = state.get("report_heard_at")
    return (now - heard).total_seconds() if heard else None


def why_not_recovered(ev: Evaluation, state: HostState, now: datetime) -> dict[str, Any] | None:
    """Say why a host that is not up is not being activated, and since when that holds.

    The reason is today's policy over the stored report, unless the tick capped the host (caps
    depend on the whole fleet). ``at`` is when the tick first made that decision, or now when
    the tick has not made it (yet).
    """
    if ev.host.status is HostStatus.UP:
        return None
    code: str | None = ev.decision.code
    detail: str | None = ev.decision.detail
    if ev.decision.is_activate and state["last_decision"] == Skip.CAPPED.value:
        code, detail = Skip.CAPPED.value, state["last_decision_detail"]
    stored = (state["last_decision"], state["last_decision_detail"]) == (code, detail)
    at = state["last_decision_at"] if stored and state["last_decision_at"] else now
    return {"code": code, "detail": detail, "at": at.isoformat()}


def host_detail(row: HostRow, ev: Evaluation, now: datetime) -> dict[str, Any]:
    """Present one host with its assessment, its last decision and why it is not recovered."""
    host, report, state = row
    return {
        **_host_fields(host),
        "report_age_s": heard_age_s(state, now),
        "report": report_as_dict(report) if report else None,
        "problems": [
            {"reason": p.reason.value, "detail": p.detail, "repairable": p.repairable}
            for p in ev.assessment.problems
        ],
        "last_decision": {
            "code": state["last_decision"],
            "detail": state["last_decision_detail"],
            "at": _iso(state["last_decision_at"]),
        },
        "why_not_recovered": why_not_recovered(ev, state, now),
    }


def holds(row: HostRow, view: SafetyView, now: datetime) -> dict[str, Any]:
    """Present what holds a host back: backoff, quarantine, a pause, the observer's gate."""
    host = row.host
    pause = view.gates.pause_for(host.cluster_id, now)
    return {
        "failures": host.failures,
        "next_attempt_at": _iso(host.next_attempt_at),
        "quarantined_at": _iso(host.quarantined_at),
        "quarantine_reason": row.state["quarantine_reason"],
        "pause": pause_as_dict(pause) if pause else None,
        "observer_gate": view.gates.observer_block,
    }
