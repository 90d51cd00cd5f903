"""Storage domains: operator operations, and ``activate_storage_domain`` on the fenced core.

A domain that no up host reaches goes ``inactive``; when monitoring shows it reachable again the
tick queues its activation: the agents of hosts that reach it are asked to connect it, under
the domain's fencing token, and it is ``active`` once one succeeds. Hosts that need an inactive
domain wait for it (the shared object first), then come back in capped waves.
"""

from __future__ import annotations

import builtins
import logging
import uuid
from datetime import timedelta
from typing import Any

from autorecovery.adapters.agents import AgentClient
from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.ports import DomainActivationRow, LockFactory
from autorecovery.services import Clock, Enqueuer
from autorecovery.services.activation.core import FencedActivations
from autorecovery.services.activation.domains import DomainKind
from autorecovery.services.activation.kinds import Outcome
from autorecovery.services.audit import Trail
from models.domain import DomainStatus, StorageDomain, Trigger
from models.errors import BrokerUnavailable, Conflict, NotFound

log = logging.getLogger(__name__)


def domain_as_dict(sd: StorageDomain, clusters: list[str] | None = None) -> dict[str, Any]:
    """Present a storage domain as JSON."""
    out: dict[str, Any] = {
        "id": sd.id,
        "status": sd.status.value,
        "autorecovery": sd.autorecovery,
        "last_seen_at": sd.last_seen_at.isoformat() if sd.last_seen_at else None,
        "status_changed_at": sd.status_changed_at.isoformat() if sd.status_changed_at else None,
        "detail": sd.detail,
    }
    if clusters is not None:
        out["clusters"] = clusters
    return out


class StorageService:
    """Operations on storage domains and their activation."""

    def __init__(
        self,
        db: Database,
        lock: LockFactory,
        agents: AgentClient,
        enqueue: Enqueuer,
        *,
        clock: Clock,
        lock_ttl_s: float,
        report_max_age_s: float,
        repos: Repos = PG_REPOS,
        hold_s: float = 20.0,
        poll_s: float = 1.0,
    ) -> None:
        self.db = db
        self.agents = agents
        self.enqueue = enqueue
        self.clock = clock
        self.lock_ttl_s = lock_ttl_s
        self.report_max_age_s = report_max_age_s
        self.repos = repos
        self.core = FencedActivations(db, lock, clock=clock, lock_ttl_s=lock_ttl_s, poll_s=poll_s)
        self.domains = DomainKind(
            self.core, repos, agents, clock=clock, report_max_age_s=report_max_age_s, hold_s=hold_s
        )

    # -- operator operations -----------------------------------------------------------------

    def list(self) -> list[dict[str, Any]]:
        """Return every storage domain."""
        with self.db.transaction() as conn:
            domains = self.repos.storage.all_domains(conn)
        return [domain_as_dict(sd) for sd in domains.values()]

    def get(self, sd_id: str) -> dict[str, Any]:
        """Return one storage domain with its clusters and any activation in flight."""
        with self.db.transaction() as conn:
            sd = self.repos.storage.get(conn, sd_id)
            if sd is None:
                raise NotFound("storage_domain", sd_id)
            clusters = self.repos.storage.clusters_of(conn, sd_id)
            running = self.repos.storage.in_flight(conn, sd_id)
        out = domain_as_dict(sd, clusters)
        out["activation"] = _activation_json(running)
        return out

    def set_autorecovery(self, sd_id: str, enabled: bool, actor: str) -> None:
        """Turn a domain's autorecovery on or off, audited."""
        now = self.clock()
        with self.db.transaction() as conn:
            if not self.repos.storage.set_autorecovery(conn, sd_id, enabled):
                raise NotFound("storage_domain", sd_id)
            event = "autorecovery_enabled" if enabled else "autorecovery_disabled"
            Trail(self.repos, conn, now, actor).storage_domain(sd_id, event, {"enabled": enabled})

    def set_maintenance(self, sd_id: str, actor: str, reason: str | None) -> None:
        """Put a domain in maintenance: only an admin takes it out again.

        An activation in flight is abandoned and the domain's fence bumped in the same
        transaction, so that its holder (sending, or waiting for a connect) writes nothing.
        """
        now = self.clock()
        with self.db.transaction() as conn:
            sd = self.repos.storage.get(conn, sd_id)
            if sd is None:
                raise NotFound("storage_domain", sd_id)
            abandoned = self.repos.storage.abandon_for_maintenance(conn, sd_id, now)
            self.repos.storage.set_status(
                conn, sd_id, DomainStatus.MAINTENANCE.value, reason or "set by an admin", now
            )
            details = {"from": sd.status.value, "to": "maintenance", "detail": reason}
            trail = Trail(self.repos, conn, now, actor)
            if abandoned is not None:
                trail.storage_domain(
                    sd_id, "activation_abandoned", {"activation_id": abandoned}, reason="maintenance"
                )
            trail.storage_domain(sd_id, "status_changed", details, reason="maintenance")

    def request_activation(self, sd_id: str, actor: str) -> str:
        """Queue an admin's activation of a domain (also out of maintenance); return its id.

        Raises:
            NotFound: unknown domain. Conflict: already active, or an activation in flight.
        """
        now = self.clock()
        activation_id = str(uuid.uuid4())
        with self.db.transaction() as conn:
            sd = self.repos.storage.get(conn, sd_id)
            if sd is None:
                raise NotFound("storage_domain", sd_id)
            if sd.status is DomainStatus.ACTIVE:
                raise Conflict(f"storage domain {sd_id} is already active", {"status": "active"})
            if not self.repos.storage.queue_activation(
                conn, activation_id, sd_id, trigger=Trigger.MANUAL.value, actor=actor, now=now
            ):
                held = self.repos.storage.in_flight(conn, sd_id)
                raise Conflict(
                    f"storage domain {sd_id} is being activated", {"holder": _activation_json(held)}
                )
        self._send(activation_id, sd_id, Trigger.MANUAL.value, actor)
        return activation_id

    def queue_reachable(self) -> builtins.list[str]:
        """Queue activations of inactive domains that monitoring shows reachable again."""
        now = self.clock()
        fresh = now - timedelta(seconds=self.report_max_age_s)
        queued = []
        with self.db.transaction() as conn:
            for sd_id in self.repos.storage.reachable_inactive(conn, fresh):
                activation_id = str(uuid.uuid4())
                if self.repos.storage.queue_activation(
                    conn, activation_id, sd_id, trigger=Trigger.AUTO.value, actor="auto", now=now
                ):
                    queued.append((activation_id, sd_id))
        sent = []
        for activation_id, sd_id in queued:
            try:
                self._send(activation_id, sd_id, Trigger.AUTO.value, "auto")
            except BrokerUnavailable:
                continue  # closed and audited; the tick goes on to the hosts
            sent.append(sd_id)
        return sent

    def _send(self, activation_id: str, sd_id: str, trigger: str, actor: str) -> None:
        """Send the activation; if the broker refuses it, close it as not_enqueued (audited)."""
        try:
            self.enqueue(activation_id, sd_id, trigger, actor)
        except BrokerUnavailable as exc:
            log.error("storage domain %s: cannot queue activation %s: %s", sd_id, activation_id, exc)
            now = self.clock()
            with self.db.transaction() as conn:
                if self.repos.storage.finish_activation(
                    conn,
                    activation_id,
                    state="failed",
                    outcome="not_enqueued",
                    detail=str(exc),
                    now=now,
                    fence=None,
                ):
                    self.repos.audit.add(
                        conn,
                        at=now,
                        object_type="storage_domain",
                        object_id=sd_id,
                        event="activation_not_enqueued",
                        actor=actor,
                        reason="broker_unavailable",
                        details={"activation_id": activation_id, "error": str(exc)},
                    )
            raise

    # -- the activation (on the fenced core) -----------------------------------------------

    def run(self, activation_id: str, sd_id: str, task_id: str | None = None) -> Outcome:
        """The first step: under the domain's lock and fence, connect it through a host.

        Raises:
            LockBusyRetry: another delivery of this activation holds the domain's lock.
            TransientError: Redis or PostgreSQL failed before the outcome was recorded.
        """
        return self.core.run(self.domains, activation_id, sd_id, task_id)

    def check(self, activation_id: str, sd_id: str, task_id: str | None = None) -> Outcome:
        """A later step of a sent connect: close it at its deadline, else look again later."""
        return self.core.check(self.domains, activation_id, sd_id, task_id)

    def is_queued(self, activation_id: str) -> bool:
        """True while the domain's activation has not begun (a retry must not outlive its message)."""
        return self.core.is_queued(self.domains, activation_id)

    def give_up(self, activation_id: str, sd_id: str, error: str) -> bool:
        """Close a domain activation whose retries ran out, unless a live holder has its lock."""
        return self.core.give_up(self.domains, activation_id, sd_id, error)


def _activation_json(row: DomainActivationRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
