"""``init_vds_on_up``: lock, fence, re-check on a fresh report, init, and record the outcome.

Every write of an activation is fenced: it changes nothing unless the host's fence is still the
token this activation was issued. A holder that lost its lock therefore writes nothing.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis

from autorecovery import failpoints
from autorecovery.adapters import keys
from autorecovery.adapters.agents import AgentClient, InitResult, Target
from autorecovery.adapters.locks import ObjectLock
from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Conn, Database
from autorecovery.services import Clock
from models.assessment import assess
from models.domain import (
    ActivationState,
    Cluster,
    DomainStatus,
    Host,
    HostStatus,
    Reason,
    Trigger,
    domains_by_status,
    effective_cluster,
)
from models.errors import AgentUnavailable, InitOutcomeUnknown, LockServiceUnavailable, StaleFence
from models.policy import Skip, recheck
from models.safety import Gates, backoff_delay_s, is_flapping

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


@dataclass(frozen=True, slots=True)
class RecoverySafety:
    """Backoff and flap limits applied when an automatic activation ends."""

    backoff_base_s: float = 10.0
    backoff_max_s: float = 3600.0
    flap_limit: int = 5
    flap_window_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class _Run:
    """One activation in progress: what every step needs to know."""

    activation_id: str
    host: Host
    cluster: Cluster
    fence: int
    trigger: Trigger
    actor: str

    def outcome(self, code: str, detail: str) -> Outcome:
        return Outcome(self.activation_id, self.host.id, code, detail, self.fence)


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
        safety: RecoverySafety = RecoverySafety(),  # noqa: B008 - frozen, shared safely
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.repos = repos
        self.failpoints = failpoints
        self.redis = redis_client
        self.agents = agents
        self.lock_ttl_s = lock_ttl_s
        self.report_max_age_s = report_max_age_s
        self.clock = clock
        self.safety = safety
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets

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
            return self._run_locked(act.id, host_id, Trigger(act.trigger), act.actor, lock)
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

    def _begin(
        self, activation_id: str, host_id: str, trigger: Trigger, actor: str
    ) -> tuple[_Run, Gates] | None:
        """Issue the fencing token and load the host, its cluster and the pauses."""
        now = self.clock()
        with self.db.transaction() as conn:
            fence = self.repos.activations.begin(conn, activation_id, now)
            loaded = self.repos.hosts.get_host(conn, host_id)
            cluster = self.repos.hosts.get_cluster(conn, loaded[0].cluster_id) if loaded else None
            pauses = self.repos.safety.list_pauses(conn)
            domains = self.repos.storage.all_domains(conn)
            if fence is None or loaded is None or cluster is None:
                return None
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
        log.info(
            "host %s: activation %s started (fence %s, %s by %s)",
            host_id,
            activation_id,
            fence,
            trigger.value,
            actor,
        )
        maintenance = domains_by_status(domains, DomainStatus.MAINTENANCE)
        gates = Gates(pauses=pauses, inactive_domains=domains_by_status(domains, DomainStatus.INACTIVE))
        run = _Run(activation_id, loaded[0], effective_cluster(cluster, maintenance), fence, trigger, actor)
        return run, gates

    def _run_locked(
        self, activation_id: str, host_id: str, trigger: Trigger, actor: str, lock: ObjectLock
    ) -> Outcome:
        begun = self._begin(activation_id, host_id, trigger, actor)
        if begun is None:
            log.info("host %s: activation %s was closed before it started", host_id, activation_id)
            return Outcome(activation_id, host_id, "duplicate", "activation closed before start")
        run, gates = begun
        target = Target(run.host.id, run.host.agent_url)

        # Re-check on a fresh report: never an automatic init on a host that still has a problem.
        report = self.agents.get_report(target, self.clock())
        now = self.clock()
        assessment = assess(report, run.cluster, now, self.report_max_age_s)
        decision = recheck(run.host, assessment, trigger, gates, now, run.cluster)
        if not decision.is_activate:
            # An earlier attempt of this activation may have left the host initializing: it
            # returns to non_operational, never stays initializing with nothing in flight.
            stuck = run.host.status is HostStatus.INITIALIZING
            problem = assessment.primary
            return self._close(
                run,
                state="skipped",
                outcome=decision.code,
                reason=(problem.reason.value if problem else Reason.ACTIVATION_FAILED.value)
                if stuck
                else decision.code,
                detail=decision.detail,
                status=HostStatus.NON_OPERATIONAL if stuck else None,
            )
        try:
            self._mark_initializing(run)
        except StaleFence as exc:
            log.warning(
                "host %s: activation %s lost its fence before init; wrote nothing: %s",
                host_id,
                activation_id,
                exc,
            )
            return run.outcome("stale_fence", str(exc))

        failpoints.hit(self.failpoints, "stop_before_init")
        if lock.is_lost:
            # The lock expired or Redis failed under us: no agent call. The close is fenced, so
            # if another activation took over it writes nothing; otherwise the host is out again.
            log.warning("host %s: activation %s lost its lock before init; not calling the agent",
                        host_id, activation_id)
            return self._close(run, state="failed", outcome="lock_lost",
                               reason=Reason.ACTIVATION_FAILED.value,
                               detail="the host's lock was lost before init",
                               status=HostStatus.NON_OPERATIONAL)
        try:
            result = self.agents.init(target, run.fence, activation_id)
        except StaleFence as exc:
            log.warning(
                "host %s: agent refused fence %s (highest accepted %s)", host_id, run.fence, exc.highest
            )
            # If PostgreSQL still has our fence, its counter is behind the agent's (a restored
            # database): record the failure and move the counter past the agent's.
            return self._close(
                run,
                state="failed",
                outcome="stale_fence",
                reason=Reason.ACTIVATION_FAILED.value,
                detail=f"agent refused fence {run.fence}: {exc}",
                status=HostStatus.NON_OPERATIONAL,
                raise_fence_to=exc.highest,
            )
        except (AgentUnavailable, InitOutcomeUnknown) as exc:
            result = InitResult(ok=False, reason=Reason.ACTIVATION_FAILED.value, detail=str(exc))
        return self._conclude(run, target, result)

    def _mark_initializing(self, run: _Run) -> None:
        with self.db.transaction() as conn:
            if not self.repos.hosts.set_status(
                conn,
                run.host.id,
                HostStatus.INITIALIZING.value,
                None,
                f"activation {run.activation_id}",
                self.clock(),
                fence=run.fence,
            ):
                raise StaleFence(f"host {run.host.id}: fence {run.fence} superseded before init")
            self.repos.audit.add(
                conn,
                at=self.clock(),
                object_type="host",
                object_id=run.host.id,
                event="status_changed",
                actor=run.actor,
                reason="activation",
                details={
                    "from": run.host.status.value,
                    "to": "initializing",
                    "activation_id": run.activation_id,
                    "fence": run.fence,
                },
            )

    def _conclude(self, run: _Run, target: Target, result: InitResult) -> Outcome:
        if not result.ok:
            return self._close(
                run,
                state="failed",
                outcome="failed",
                reason=result.reason or Reason.GENERAL.value,
                detail=result.detail or "agent init failed",
                status=HostStatus.NON_OPERATIONAL,
            )
        # Success only when the host is really up: its report after init must be clean.
        report = self.agents.get_report(target, self.clock())
        assessment = assess(report, run.cluster, self.clock(), self.report_max_age_s)
        if assessment.primary is not None:
            return self._close(
                run,
                state="failed",
                outcome="unhealthy_after_init",
                reason=assessment.primary.reason.value,
                detail=assessment.primary.detail,
                status=HostStatus.NON_OPERATIONAL,
            )
        return self._close(
            run,
            state="succeeded",
            outcome="up",
            reason=None,
            detail="agent init ok; report clean",
            status=HostStatus.UP,
        )

    def _close(
        self,
        run: _Run,
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
                    run,
                    state=state,
                    outcome=outcome,
                    reason=reason,
                    detail=detail,
                    status=status,
                    raise_fence_to=raise_fence_to,
                )
        except StaleFence as exc:
            log.warning(
                "host %s: activation %s lost its fence; wrote nothing: %s",
                run.host.id,
                run.activation_id,
                exc,
            )
            return run.outcome("stale_fence", str(exc))
        log.info(
            "host %s: activation %s %s (%s: %s)", run.host.id, run.activation_id, outcome, reason, detail
        )
        return run.outcome(outcome, detail)

    def _write_close(
        self,
        conn: Conn,
        run: _Run,
        *,
        state: str,
        outcome: str,
        reason: str | None,
        detail: str,
        status: HostStatus | None,
        raise_fence_to: int | None,
    ) -> None:
        now = self.clock()
        host_id = run.host.id
        if not self.repos.activations.finish(
            conn,
            run.activation_id,
            state=state,
            outcome=outcome,
            reason=reason,
            detail=detail,
            now=now,
            fence=run.fence,
        ):
            raise StaleFence(f"activation {run.activation_id} no longer holds fence {run.fence}")
        if status is not None:
            if not self.repos.hosts.set_status(
                conn,
                host_id,
                status.value,
                reason if status is not HostStatus.UP else None,
                detail,
                now,
                fence=run.fence,
            ):
                raise StaleFence(f"host {host_id}: fence {run.fence} superseded")
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="status_changed",
                actor=run.actor,
                reason=reason or "activated",
                details={
                    "from": "initializing",
                    "to": status.value,
                    "detail": detail,
                    "activation_id": run.activation_id,
                    "fence": run.fence,
                },
            )
        self.repos.audit.add(
            conn,
            at=now,
            object_type="host",
            object_id=host_id,
            event=f"activation_{state}",
            actor=run.actor,
            reason=outcome,
            details={"activation_id": run.activation_id, "fence": run.fence, "detail": detail},
        )
        if state in ("succeeded", "failed"):
            self._account(conn, run, succeeded=state == "succeeded")
        if raise_fence_to is not None:
            self.repos.hosts.raise_fence(conn, host_id, run.fence, raise_fence_to)

    def _account(self, conn: Conn, run: _Run, *, succeeded: bool) -> None:
        """Backoff, reset and flap quarantine, in the closing transaction."""
        now = self.clock()
        host_id = run.host.id
        if succeeded and run.host.status is HostStatus.ERROR:
            # Back from error, healthy: its charges are forgotten.
            cleared = self.repos.vmruns.clear_charges(conn, host_id)
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="charges_cleared",
                actor=run.actor,
                reason="recovered_from_error",
                details={"charges": cleared},
            )
        if succeeded:
            # A success resets the backoff; an admin's successful activation also ends quarantine.
            held = self.repos.safety.clear_holds(
                conn, host_id, quarantine=run.trigger is Trigger.MANUAL, now=now
            )
            if held and held["quarantined_at"] is not None and run.trigger is Trigger.MANUAL:
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="host",
                    object_id=host_id,
                    event="quarantine_cleared",
                    actor=run.actor,
                    reason="manual_activation",
                    details={"activation_id": run.activation_id},
                )
        elif run.trigger is Trigger.AUTO:
            failures = self.repos.safety.failures_of(conn, host_id) + 1
            delay = backoff_delay_s(
                failures, self.safety.backoff_base_s, self.safety.backoff_max_s, self.rng.random()
            )
            self.repos.safety.record_failure(conn, host_id, run.fence, now + timedelta(seconds=delay))
            self.repos.audit.add(
                conn,
                at=now,
                object_type="host",
                object_id=host_id,
                event="backoff",
                actor="auto",
                reason=f"{failures} failure(s) in a row",
                details={
                    "failures": failures,
                    "delay_s": round(delay, 3),
                    "activation_id": run.activation_id,
                },
            )
            log.info("host %s: backing off %.1fs after %s failure(s)", host_id, delay, failures)
        if run.trigger is not Trigger.AUTO:
            return
        since = now - timedelta(seconds=self.safety.flap_window_s)
        ends = self.repos.safety.auto_ends_since(conn, host_id, since)
        if is_flapping(ends, self.safety.flap_limit):
            why = (
                f"{ends} automatic recoveries or failures within "
                f"{self.safety.flap_window_s:.0f}s (limit {self.safety.flap_limit})"
            )
            if self.repos.safety.quarantine(conn, host_id, now, why):
                self.repos.audit.add(
                    conn,
                    at=now,
                    object_type="host",
                    object_id=host_id,
                    event="quarantined",
                    actor="auto",
                    reason="flapping",
                    details={"detail": why},
                )
                log.warning("host %s: quarantined: %s", host_id, why)

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
            if act.fence is not None:
                # Whoever still holds this fence (a paused attempt) can write nothing after this.
                self.repos.hosts.raise_fence(conn, host_id, act.fence, act.fence + 1)
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
