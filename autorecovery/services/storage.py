"""Storage domains: operator operations and ``activate_storage_domain`` under its own lock and fence.

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

import redis

from autorecovery.adapters import keys
from autorecovery.adapters.agents import AgentClient, Target
from autorecovery.adapters.locks import ObjectLock
from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.ports import DomainActivationRow
from autorecovery.services import Clock, Enqueuer
from autorecovery.services.audit import Trail
from models.domain import DomainStatus, StorageDomain, Trigger
from models.errors import AgentUnavailable, BrokerUnavailable, Conflict, NotFound, StaleFence

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
        redis_client: redis.Redis,
        agents: AgentClient,
        enqueue: Enqueuer,
        *,
        clock: Clock,
        lock_ttl_s: float,
        report_max_age_s: float,
        repos: Repos = PG_REPOS,
    ) -> None:
        self.db = db
        self.redis = redis_client
        self.agents = agents
        self.enqueue = enqueue
        self.clock = clock
        self.lock_ttl_s = lock_ttl_s
        self.report_max_age_s = report_max_age_s
        self.repos = repos

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

        Raises:
            Conflict: an activation of the domain is queued or running.
        """
        now = self.clock()
        with self.db.transaction() as conn:
            sd = self.repos.storage.get(conn, sd_id)
            if sd is None:
                raise NotFound("storage_domain", sd_id)
            if self.repos.storage.in_flight(conn, sd_id) is not None:
                raise Conflict(f"storage domain {sd_id} is being activated")
            self.repos.storage.set_status(
                conn, sd_id, DomainStatus.MAINTENANCE.value, reason or "set by an admin", now
            )
            details = {"from": sd.status.value, "to": "maintenance", "detail": reason}
            trail = Trail(self.repos, conn, now, actor)
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

    # -- the activation ---------------------------------------------------------------------

    def run(self, activation_id: str, sd_id: str) -> dict[str, Any]:
        """Activate a domain under its lock and fence: connect it through a host that reaches it."""
        lock = ObjectLock(self.redis, keys.storage_domain_lock(sd_id), self.lock_ttl_s)
        if not lock.acquire():
            return self._skip_busy(activation_id, sd_id)
        try:
            lock.start_renewing()
            return self._run_locked(activation_id, sd_id)
        finally:
            lock.release()

    def _skip_busy(self, activation_id: str, sd_id: str) -> dict[str, Any]:
        """A busy lock is a normal outcome: the activation is closed as skipped, and audited."""
        now = self.clock()
        with self.db.transaction() as conn:
            act = self.repos.storage.get_activation(conn, activation_id)
            if self.repos.storage.finish_activation(
                conn,
                activation_id,
                state="skipped",
                outcome="lock_busy",
                detail="another activation holds the lock",
                now=now,
                fence=None,
            ):
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="storage_domain",
                    object_id=sd_id,
                    event="activation_skipped",
                    actor=act["actor"] if act else "auto",
                    reason="lock_busy",
                    details={"activation_id": activation_id},
                )
        log.info("storage domain %s: activation %s skipped: lock busy", sd_id, activation_id)
        return {"sd_id": sd_id, "outcome": "lock_busy"}

    def give_up(self, activation_id: str, sd_id: str, error: str) -> None:
        """Close a domain activation whose retries ran out, bumping the domain's fence."""
        now = self.clock()
        with self.db.transaction() as conn:
            act = self.repos.storage.get_activation(conn, activation_id)
            if act is None or act["state"] not in ("queued", "running"):
                return
            self.repos.storage.finish_activation(
                conn,
                activation_id,
                state="failed",
                outcome="gave_up",
                detail=error[:500],
                now=now,
                fence=act["fence"],
            )
            self.repos.audit.add(
                conn,
                at=now,
                object_type="storage_domain",
                object_id=sd_id,
                event="activation_failed",
                actor=act["actor"],
                reason="gave_up",
                details={"activation_id": activation_id, "error": error[:500]},
            )
        log.error("storage domain %s: activation %s gave up: %s", sd_id, activation_id, error)

    def _run_locked(self, activation_id: str, sd_id: str) -> dict[str, Any]:
        now = self.clock()
        fresh = now - timedelta(seconds=self.report_max_age_s)
        with self.db.transaction() as conn:
            act = self.repos.storage.get_activation(conn, activation_id)
            fence = self.repos.storage.begin_activation(conn, activation_id, now)
            targets = self.repos.storage.connect_targets(conn, sd_id, fresh)
            if fence is not None and act is not None:
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="storage_domain",
                    object_id=sd_id,
                    event="activation_started",
                    actor=act["actor"],
                    reason=act["trigger"],
                    details={"activation_id": activation_id, "fence": fence},
                )
        if fence is None or act is None:
            return {"sd_id": sd_id, "outcome": "duplicate"}
        log.info(
            "storage domain %s: activation %s started (fence %s, %d candidate hosts)",
            sd_id,
            activation_id,
            fence,
            len(targets),
        )
        tried: list[str] = []
        for target in targets:
            tried.append(target["id"])
            try:
                result = self.agents.connect_storage_domain(
                    Target(target["id"], target["agent_url"]), sd_id, fence, activation_id
                )
            except StaleFence as exc:
                log.warning(
                    "storage domain %s: agent of %s refused fence %s: %s", sd_id, target["id"], fence, exc
                )
                return self._close(
                    activation_id, sd_id, fence, act["actor"], ok=False, detail=f"stale fence {fence}: {exc}"
                )
            except AgentUnavailable as exc:
                log.warning("storage domain %s: %s did not answer: %s", sd_id, target["id"], exc)
                continue
            if result.ok:
                return self._close(
                    activation_id,
                    sd_id,
                    fence,
                    act["actor"],
                    ok=True,
                    detail=f"connected through host {target['id']}",
                )
        return self._close(
            activation_id,
            sd_id,
            fence,
            act["actor"],
            ok=False,
            detail=f"no host could connect it (tried: {', '.join(tried) or 'none'})",
        )

    def _close(
        self, activation_id: str, sd_id: str, fence: int, actor: str, *, ok: bool, detail: str
    ) -> dict[str, Any]:
        now = self.clock()
        try:
            with self.db.transaction() as conn:
                if not self.repos.storage.finish_activation(
                    conn,
                    activation_id,
                    state="succeeded" if ok else "failed",
                    outcome="active" if ok else "failed",
                    detail=detail,
                    now=now,
                    fence=fence,
                ):
                    raise StaleFence(f"activation {activation_id} lost fence {fence}")
                if ok and not self.repos.storage.set_status(
                    conn, sd_id, DomainStatus.ACTIVE.value, detail, now, fence=fence
                ):
                    raise StaleFence(f"storage domain {sd_id}: fence {fence} superseded")
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="storage_domain",
                    object_id=sd_id,
                    event="activation_succeeded" if ok else "activation_failed",
                    actor=actor,
                    reason="active" if ok else "failed",
                    details={"activation_id": activation_id, "fence": fence, "detail": detail},
                )
        except StaleFence as exc:
            log.warning("storage domain %s: activation %s wrote nothing: %s", sd_id, activation_id, exc)
            return {"sd_id": sd_id, "outcome": "stale_fence"}
        log.info(
            "storage domain %s: activation %s %s: %s",
            sd_id,
            activation_id,
            "succeeded" if ok else "failed",
            detail,
        )
        return {"sd_id": sd_id, "outcome": "active" if ok else "failed", "detail": detail}


def _activation_json(row: DomainActivationRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
