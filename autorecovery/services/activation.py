"""``init_vds_on_up``: lock, fence, re-check on a fresh report, init, and record the outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from autorecovery import failpoints, keys
from autorecovery.agents import AgentClient, InitResult, Target
from autorecovery.locks import ObjectLock
from autorecovery.services import Clock
from autorecovery.store import PG_REPOS, Repos
from autorecovery.store.db import Conn, Database
from models.assessment import assess
from models.domain import ActivationState, Cluster, Host, HostStatus, Reason, Trigger
from models.errors import AgentUnavailable, LockServiceUnavailable, StaleFence
from models.policy import Skip, recheck

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one activation ended."""

    activation_id: str
    host_id: str
    outcome: str
    detail: str
    fence: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Present the outcome as JSON (the task's return value)."""
        return {
            "activation_id": self.activation_id,
            "host_id": self.host_id,
            "outcome": self.outcome,
            "detail": self.detail,
            "fence": self.fence,
        }


class LockBusyRetry(LockServiceUnavailable):
    """A redelivered activation found its host's lock still held by its dead predecessor."""


class ActivationService:
    """Runs activations; a holder that lost its fence writes nothing."""

    def __init__(
        self,
        db: Database,
        redis_client: redis.Redis,
        agents: AgentClient,
        *,
        lock_ttl_s: float,
        report_max_age_s: float,
        clock: Clock,
        repos: Repos = PG_REPOS,
        failpoints: str = "",
    ) -> None:
        self.db = db
        self.repos = repos
        self.failpoints = failpoints
        self.redis = redis_client
        self.agents = agents
        self.lock_ttl_s = lock_ttl_s
        self.report_max_age_s = report_max_age_s
        self.clock = clock

    def run(self, activation_id: str, host_id: str) -> Outcome:
        """Run one activation to its end.

        Raises:
            TransientError: Redis or PostgreSQL failed before the outcome was recorded; the task
                retries with backoff.
        """
        with self.db.transaction() as conn:
            act = self.repos.activations.get(conn, activation_id)
        if act is None or act.state not in (ActivationState.QUEUED, ActivationState.RUNNING):
            state = act.state if act else "missing"
            log.info("host %s: activation %s is %s; nothing to do", host_id, activation_id, state)
            return Outcome(activation_id, host_id, "duplicate", f"activation is {state}")

        lock = ObjectLock(self.redis, keys.host_lock(host_id), self.lock_ttl_s)
        if not lock.acquire():
            if act.state == ActivationState.RUNNING:
                raise LockBusyRetry(f"host {host_id}: lock still held by an earlier attempt")
            return self._skip_busy(act.id, host_id, act.actor)
        try:
            lock.start_renewing()
            return self._run_locked(act.id, host_id, Trigger(act.trigger), act.actor)
        finally:
            lock.release()

    def _skip_busy(self, activation_id: str, host_id: str, actor: str) -> Outcome:
        now = self.clock()
        detail = "another activation holds the host's lock"
        with self.db.transaction() as conn:
            self.repos.activations.finish(
                conn,
                activation_id,
                state="skipped",
                outcome=Skip.LOCK_BUSY.value,
                reason=Skip.LOCK_BUSY.value,
                detail=detail,
                now=now,
                fence=None,
            )
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="activation_skipped",
                actor=actor,
                reason=Skip.LOCK_BUSY.value,
                details={"activation_id": activation_id},
            )
        log.info("host %s: activation %s skipped: %s", host_id, activation_id, detail)
        return Outcome(activation_id, host_id, Skip.LOCK_BUSY.value, detail)

    def _run_locked(self, activation_id: str, host_id: str, trigger: Trigger, actor: str) -> Outcome:
        now = self.clock()
        with self.db.transaction() as conn:
            fence = self.repos.activations.begin(conn, activation_id, now)
            loaded = self.repos.hosts.get_host(conn, host_id)
            cluster = self.repos.hosts.get_cluster(conn, loaded[0].cluster_id) if loaded else None
            if fence is not None and loaded is not None:
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="host",
                    object_id=host_id,
                    event="activation_started",
                    actor=actor,
                    reason=trigger.value,
                    details={"activation_id": activation_id, "fence": fence},
                )
        if fence is None or loaded is None or cluster is None:
            log.info("host %s: activation %s was closed before it started", host_id, activation_id)
            return Outcome(activation_id, host_id, "duplicate", "activation closed before start")
        host = loaded[0]
        log.info(
            "host %s: activation %s started (fence %s, %s by %s)",
            host_id,
            activation_id,
            fence,
            trigger.value,
            actor,
        )
        target = Target(host.id, host.agent_url)

        report = self.agents.get_report(target, self.clock())
        assessment = assess(report, cluster, self.clock(), self.report_max_age_s)
        decision = recheck(host, assessment, trigger)
        if not decision.is_activate:
            return self._close(
                activation_id,
                host,
                fence,
                actor,
                state="skipped",
                outcome=decision.code,
                reason=decision.code,
                detail=decision.detail,
                status=None,
            )

        try:
            self._mark_initializing(activation_id, host, fence, actor)
        except StaleFence as exc:
            log.warning("host %s: activation %s lost its fence before init; wrote nothing: %s",
                        host_id, activation_id, exc)
            return Outcome(activation_id, host_id, "stale_fence", str(exc), fence)

        failpoints.hit(self.failpoints, "stop_before_init")
        try:
            result = self.agents.init(target, fence, activation_id)
        except StaleFence as exc:
            log.warning("host %s: agent refused fence %s (highest accepted %s)", host_id, fence,
                        exc.highest)
            # If PostgreSQL still has our fence, its counter is behind the agent's (a restored
            # database): record the failure and move the counter past the agent's.
            return self._close(activation_id, host, fence, actor, state="failed",
                               outcome="stale_fence", reason=Reason.ACTIVATION_FAILED.value,
                               detail=f"agent refused fence {fence}: {exc}",
                               status=HostStatus.NON_OPERATIONAL, raise_fence_to=exc.highest)
        except AgentUnavailable as exc:
            result = InitResult(ok=False, reason=Reason.ACTIVATION_FAILED.value, detail=str(exc))
        return self._conclude(activation_id, host, cluster, fence, actor, target, result)

    def _mark_initializing(self, activation_id: str, host: Host, fence: int, actor: str) -> None:
        with self.db.transaction() as conn:
            if not self.repos.hosts.set_status(
                conn,
                host.id,
                HostStatus.INITIALIZING.value,
                None,
                f"activation {activation_id}",
                self.clock(),
                fence=fence,
            ):
                raise StaleFence(f"host {host.id}: fence {fence} superseded before init")
            self.repos.audit.add(
                conn,
                at=self.clock(),
                object_type="host",
                object_id=host.id,
                event="status_changed",
                actor=actor,
                reason="activation",
                details={
                    "from": host.status.value,
                    "to": "initializing",
                    "activation_id": activation_id,
                    "fence": fence,
                },
            )

    def _conclude(
        self,
        activation_id: str,
        host: Host,
        cluster: Cluster,
        fence: int,
        actor: str,
        target: Target,
        result: InitResult,
    ) -> Outcome:
        if not result.ok:
            return self._close(
                activation_id,
                host,
                fence,
                actor,
                state="failed",
                outcome="failed",
                reason=result.reason or Reason.GENERAL.value,
                detail=result.detail or "agent init failed",
                status=HostStatus.NON_OPERATIONAL,
            )
        # Success only when the host is really up: its report after init must be clean.
        report = self.agents.get_report(target, self.clock())
        assessment = assess(report, cluster, self.clock(), self.report_max_age_s)
        if assessment.primary is not None:
            return self._close(
                activation_id,
                host,
                fence,
                actor,
                state="failed",
                outcome="unhealthy_after_init",
                reason=assessment.primary.reason.value,
                detail=assessment.primary.detail,
                status=HostStatus.NON_OPERATIONAL,
            )
        return self._close(
            activation_id,
            host,
            fence,
            actor,
            state="succeeded",
            outcome="up",
            reason=None,
            detail="agent init ok; report clean",
            status=HostStatus.UP,
        )

    def _close(
        self,
        activation_id: str,
        host: Host,
        fence: int,
        actor: str,
        *,
        state: str,
        outcome: str,
        reason: str | None,
        detail: str,
        status: HostStatus | None,
        raise_fence_to: int | None = None,
    ) -> Outcome:
        try:
            with self.db.transaction() as conn:
                self._write_close(
                    conn,
                    activation_id,
                    host,
                    fence,
                    actor,
                    state=state,
                    outcome=outcome,
                    reason=reason,
                    detail=detail,
                    status=status,
                    raise_fence_to=raise_fence_to,
                )
        except StaleFence as exc:
            log.warning(
                "host %s: activation %s lost its fence; wrote nothing: %s", host.id, activation_id, exc
            )
            return Outcome(activation_id, host.id, "stale_fence", str(exc), fence)
        log.info("host %s: activation %s %s (%s: %s)", host.id, activation_id, outcome, reason, detail)
        return Outcome(activation_id, host.id, outcome, detail, fence)

    def _write_close(
        self,
        conn: Conn,
        activation_id: str,
        host: Host,
        fence: int,
        actor: str,
        *,
        state: str,
        outcome: str,
        reason: str | None,
        detail: str,
        status: HostStatus | None,
        raise_fence_to: int | None = None,
    ) -> None:
        now = self.clock()
        if not self.repos.activations.finish(
            conn,
            activation_id,
            state=state,
            outcome=outcome,
            reason=reason,
            detail=detail,
            now=now,
            fence=fence,
        ):
            raise StaleFence(f"activation {activation_id} no longer holds fence {fence}")
        if status is not None:
            if not self.repos.hosts.set_status(
                conn,
                host.id,
                status.value,
                reason if status is not HostStatus.UP else None,
                detail,
                now,
                fence=fence,
            ):
                raise StaleFence(f"host {host.id}: fence {fence} superseded")
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host.id,
                event="status_changed",
                actor=actor,
                reason=reason or "activated",
                details={
                    "from": "initializing",
                    "to": status.value,
                    "detail": detail,
                    "activation_id": activation_id,
                    "fence": fence,
                },
            )
        event = "activation_succeeded" if state == "succeeded" else f"activation_{state}"
        self.repos.audit.add(
            conn,
            at=now,
            object_type="host",
            object_id=host.id,
            event=event,
            actor=actor,
            reason=outcome,
            details={"activation_id": activation_id, "fence": fence, "detail": detail},
        )
        if raise_fence_to is not None:
            self.repos.hosts.raise_fence(conn, host.id, fence, raise_fence_to)


    def give_up(self, activation_id: str, host_id: str, error: str) -> None:
        """Close an activation whose retries ran out; its host returns to non_operational."""
        now = self.clock()
        with self.db.transaction() as conn:
            act = self.repos.activations.get(conn, activation_id)
            if act is None or act.state not in (ActivationState.QUEUED, ActivationState.RUNNING):
                return
            self.repos.activations.finish(
                conn,
                activation_id,
                state="failed",
                outcome="gave_up",
                reason=Reason.ACTIVATION_FAILED.value,
                detail=error,
                now=now,
                fence=act.fence,
            )
            loaded = self.repos.hosts.get_host(conn, host_id)
            if act.fence is not None and loaded and loaded[0].status is HostStatus.INITIALIZING:
                self.repos.hosts.set_status(
                    conn,
                    host_id,
                    HostStatus.NON_OPERATIONAL.value,
                    Reason.ACTIVATION_FAILED.value,
                    error[:500],
                    now,
                    fence=act.fence,
                )
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="activation_failed",
                actor=act.actor,
                reason="gave_up",
                details={"activation_id": activation_id, "error": error[:500]},
            )
        log.error("host %s: activation %s gave up: %s", host_id, activation_id, error)
