"""Pauses, holds (backoff, quarantine), the observer's gate and the plan that shows them all."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Conn, Database
from autorecovery.ports import HostRow
from autorecovery.services import Clock
from autorecovery.services.audit import Trail
from models.domain import Cluster, DomainStatus, domains_by_status, effective_cluster
from models.errors import InvalidInput, NotFound
from models.policy import Skip, evaluate
from models.safety import FLEET, HOST_HOLDS, Candidate, CapPolicy, Gates, Pause, admit

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SafetyView:
    """What gates automatic activation now, as the store has it."""

    gates: Gates
    pauses: dict[str, Pause]
    observer: dict[str, Any]
    in_flight: dict[str, int]
    sizes: dict[str, int]
    maintenance_domains: frozenset[str] = frozenset()
    #: Activations queued and not started yet (the activation queue's room).
    queued: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Present the view as JSON."""
        last = self.observer.get("last_full_tick_at")
        return {
            "gate": self.gates.observer_block,
            "last_full_tick_at": last.isoformat() if last else None,
            "silent_hosts": self.observer.get("silent_hosts", 0),
            "observed_hosts": self.observer.get("observed_hosts", 0),
            "pauses": [pause_as_dict(p) for p in self.pauses.values()],
            "in_flight": self.in_flight,
        }


#: Hosts named per hold in the safety view.
HELD_EXAMPLES = 5


def holds_by_kind(held: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Merge the (hold, status) counts of ``held_hosts`` into one entry per hold, in HOST_HOLDS order."""
    merged: dict[str, dict[str, Any]] = {}
    for row in held:
        empty = {"hold": row["hold"], "hosts": 0, "by_status": {}, "examples": []}
        entry = merged.setdefault(row["hold"], empty)
        entry["hosts"] += row["n"]
        entry["by_status"][row["status"]] = row["n"]
        entry["examples"] = sorted([*entry["examples"], *row["examples"]])[:HELD_EXAMPLES]
    return [merged[kind] for kind in HOST_HOLDS if kind in merged]


def pause_as_dict(pause: Pause) -> dict[str, Any]:
    """Present a pause as JSON."""
    return {
        "scope": pause.scope,
        "reason": pause.reason,
        "owner": pause.owner,
        "created_at": pause.created_at.isoformat(),
        "expires_at": pause.expires_at.isoformat() if pause.expires_at else None,
    }


def load_view(conn: Conn, repos: Repos, now: datetime) -> SafetyView:
    """Load pauses in force, the last tick's gate and the activations in flight."""
    pauses = {s: p for s, p in repos.safety.list_pauses(conn).items() if p.is_active(now)}
    observer = repos.safety.observer_state(conn)
    domains = repos.storage.all_domains(conn)
    gates = Gates(
        pauses=pauses,
        observer_block=observer.get("gate"),
        inactive_domains=domains_by_status(domains, DomainStatus.INACTIVE),
    )
    return SafetyView(
        gates,
        pauses,
        observer,
        repos.safety.in_flight_by_cluster(conn),
        repos.safety.cluster_sizes(conn),
        domains_by_status(domains, DomainStatus.MAINTENANCE),
        repos.safety.queued_activations(conn),
    )


def plan_hosts(
    rows: Sequence[HostRow],
    clusters: dict[str, Cluster],
    view: SafetyView,
    now: datetime,
    report_max_age_s: float,
    caps: CapPolicy,
) -> list[dict[str, Any]]:
    """Say what the next tick would do for each host, caps included, from the same policy code."""
    effective = {cid: effective_cluster(c, view.maintenance_domains) for cid, c in clusters.items()}
    evaluations = [
        evaluate(host, report, effective[host.cluster_id], now, report_max_age_s, view.gates)
        for host, report, _ in rows
    ]
    candidates = [
        Candidate(ev.host.id, ev.host.cluster_id, ev.host.status_changed_at or now)
        for ev in evaluations
        if ev.decision.is_activate
    ]
    admission = admit(candidates, view.in_flight, view.sizes, caps, view.queued)
    capped = dict((c.host_id, why) for c, why in admission.capped)
    out = []
    for ev in evaluations:
        code, detail = ev.decision.code, ev.decision.detail
        if ev.host.id in capped:
            code, detail = Skip.CAPPED.value, capped[ev.host.id]
        out.append(
            {
                "host_id": ev.host.id,
                "cluster": ev.host.cluster_id,
                "status": ev.host.status.value,
                "next_status": ev.host.status.value,
                "action": "activate" if code == ev.decision.code and ev.decision.is_activate else "skip",
                "code": code,
                "detail": detail,
                "problems": [
                    {"reason": p.reason.value, "detail": p.detail, "repairable": p.repairable}
                    for p in ev.assessment.problems
                ],
            }
        )
    return out


class SafetyService:
    """Operator controls over automatic activation; each one audited with its actor."""

    def __init__(self, db: Database, clock: Clock, repos: Repos = PG_REPOS) -> None:
        self.db = db
        self.clock = clock
        self.repos = repos

    def pause(self, scope: str, reason: str, owner: str, expires_at: datetime | None) -> Pause:
        """Stop automatic activation fleet-wide (scope ``fleet``) or for one cluster.

        Raises:
            NotFound: an unknown cluster.
            InvalidInput: an expiry that is already past.
        """
        now = self.clock()
        if expires_at is not None and expires_at <= now:
            raise InvalidInput("expires_at", "must be in the future")
        pause = Pause(scope, reason, owner, now, expires_at)
        with self.db.transaction() as conn:
            if scope != FLEET and self.repos.hosts.get_cluster(conn, scope) is None:
                raise NotFound("cluster", scope)
            self.repos.safety.set_pause(conn, pause)
            Trail(self.repos, conn, now, owner).pause(scope, "paused", pause_as_dict(pause), reason=reason)
        log.warning("automatic activation paused (%s) by %s: %s", scope, owner, reason)
        return pause

    def resume(self, scope: str, actor: str) -> Pause:
        """Lift a pause.

        Raises:
            NotFound: no pause for that scope.
        """
        now = self.clock()
        with self.db.transaction() as conn:
            pause: Pause | None = self.repos.safety.lift_pause(conn, scope)
            if pause is None:
                raise NotFound("pause", scope)
            trail = Trail(self.repos, conn, now, actor)
            trail.pause(scope, "resumed", pause_as_dict(pause), reason=pause.reason)
        log.warning("automatic activation resumed (%s) by %s", scope, actor)
        return pause

    def clear_holds(self, host_id: str, actor: str, *, quarantine: bool) -> dict[str, Any]:
        """Reset a host's backoff, and with ``quarantine`` its quarantine; return what was set.

        Raises:
            NotFound: unknown host.
        """
        now = self.clock()
        with self.db.transaction() as conn:
            was = self.repos.safety.clear_holds(conn, host_id, quarantine=quarantine, now=now)
            if was is None:
                raise NotFound("host", host_id)
            previous = {
                "failures": was["failures"],
                "next_attempt_at": was["next_attempt_at"].isoformat() if was["next_attempt_at"] else None,
                "quarantined_at": was["quarantined_at"].isoformat() if was["quarantined_at"] else None,
                "quarantine_reason": was["quarantine_reason"],
            }
            event = "quarantine_cleared" if quarantine else "backoff_reset"
            Trail(self.repos, conn, now, actor).host(host_id, event, previous, reason="admin")
        return previous

    def state(self) -> dict[str, Any]:
        """Return the gate, the pauses in force, activations in flight, open incidents and holds."""
        now = self.clock()
        with self.db.transaction() as conn:
            view = load_view(conn, self.repos, now)
            incidents = self.repos.safety.open_incidents(conn)
            held = self.repos.safety.held_hosts(conn, now, HELD_EXAMPLES)
        out = view.as_dict()
        out["holds"] = holds_by_kind(held)
        out["incidents"] = [
            {
                "id": i["id"],
                "cluster": i["cluster_id"],
                "reason": i["reason"],
                "subject": i["subject"],
                "hosts": i["hosts"],
                "opened_at": i["opened_at"].isoformat(),
            }
            for i in incidents
        ]
        return out
