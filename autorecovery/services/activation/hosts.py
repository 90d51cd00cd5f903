"""Host activations (``init_vds_on_up``) as a configuration of the fenced-activation core.

Send: re-check on a fresh report, set ``initializing``, send the agent's init; check: ask how it
went; end ``up`` or ``non_operational`` with the agent's reason (``host_init``). Each side
effect is preceded by the core's guard.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from autorecovery import failpoints
from autorecovery.adapters import keys
from autorecovery.adapters.agents import AgentClient
from autorecovery.adapters.store.db import Conn
from autorecovery.ports import AuditRepo
from autorecovery.services import Clock
from autorecovery.services.activation import agent_fence, host_init
from autorecovery.services.activation.accounting import Accounting
from autorecovery.services.activation.core import CloseWrites, FencedActivations
from autorecovery.services.activation.host_init import HostEnd, InitWait, Subject
from autorecovery.services.activation.kinds import ActivationRef, Closing, HostStore, Naming, Outcome, Run
from models.assessment import Assessment, assess
from models.domain import (
    ActivationState,
    DomainStatus,
    HostStatus,
    Reason,
    domains_by_status,
    effective_cluster,
)
from models.errors import AutorecoveryError, LockLost, StaleFence
from models.policy import Decision, recheck
from models.safety import Gates

log = logging.getLogger(__name__)


class HostKind(Naming):
    """Hosts: the host's lock, its activation records, and the init through its agent."""

    noun = "host"
    object_type = "host"
    id_field = "host_id"

    def __init__(
        self,
        core: FencedActivations,
        repos: HostStore,
        agents: AgentClient,
        accounting: Accounting,
        *,
        clock: Clock,
        report_max_age_s: float,
        failpoints: str = "",
        wait: InitWait = InitWait(),  # noqa: B008 - frozen, shared safely
    ) -> None:
        self.wait = wait
        self.core = core
        self.repos = repos
        self.agents = agents
        self.accounting = accounting
        self.clock = clock
        self.report_max_age_s = report_max_age_s
        self.failpoints = failpoints

    # -- records ---------------------------------------------------------------------------

    @property
    def audit_log(self) -> AuditRepo:
        """Host events go to the audit log."""
        return self.repos.audit

    def lock_key(self, object_id: str) -> str:
        """The host's lock."""
        return keys.host_lock(object_id)

    def load(self, conn: Conn, activation_id: str) -> ActivationRef | None:
        """Read a host activation."""
        row = self.repos.activations.get(conn, activation_id)
        if row is None:
            return None
        return ActivationRef(
            row.id,
            row.host_id,
            row.state,
            row.fence,
            row.trigger,
            row.actor,
            row.outcome,
            answer=row.answer,
            protocol=row.protocol or 1,
            was_status=row.was_status,
            past_deadline=row.past_deadline,
            deadline_at=row.deadline_at,
            check_task_id=row.check_task_id,
        )

    def begin(self, conn: Conn, activation_id: str, now: datetime) -> int | None:
        """Issue the host's next fence to the activation."""
        return self.repos.activations.begin(conn, activation_id, now)

    def mark_sent(
        self,
        conn: Conn,
        activation_id: str,
        *,
        fence: int,
        answer: str,
        protocol: int,
        hold_s: float,
        was_status: str | None,
    ) -> bool:
        """Record the init sent; the record holds the host for ``hold_s``."""
        return self.repos.activations.mark_sent(
            conn,
            activation_id,
            fence=fence,
            answer=answer,
            protocol=protocol,
            hold_s=hold_s,
            was_status=was_status,
        )

    def record_step(
        self,
        activation_id: str,
        step: str,
        task_id: str | None,
        outcome: str,
        next_check: str | None = None,
    ) -> None:
        """Record one step of the activation with its task id, and the check step it sends next.

        Best effort: if it fails, the next check is superseded (not its token) and ends at once;
        the housekeeping sends the activation another check after a while.
        """
        try:
            with self.core.statements() as conn:  # one statement
                self.repos.activations.add_step(conn, activation_id, step, task_id, outcome, next_check)
        except AutorecoveryError as exc:
            log.warning("activation %s: step %s not recorded: %s", activation_id, step, exc)

    def finish(
        self, conn: Conn, activation_id: str, closing: Closing, now: datetime, fence: int | None
    ) -> bool:
        """Close a host activation (fenced)."""
        return self.repos.activations.finish(
            conn,
            activation_id,
            state=closing.state,
            outcome=closing.outcome,
            reason=closing.reason,
            detail=closing.detail,
            now=now,
            fence=fence,
        )

    def raise_fence(self, conn: Conn, object_id: str, fence: int, at_least: int) -> bool:
        """Move the host's fence up."""
        return self.repos.hosts.raise_fence(conn, object_id, fence, at_least)

    def release(self, conn: Conn, ref: ActivationRef, error: str, now: datetime) -> None:
        """After a give-up, a host left initializing is out again, and held: an init may run."""
        loaded = self.repos.hosts.get_host(conn, ref.object_id)
        if loaded is None or loaded[0].status is not HostStatus.INITIALIZING:
            return
        detail = f"activation gave up: {error}"
        if self.repos.hosts.set_status(
            conn,
            ref.object_id,
            HostStatus.NON_OPERATIONAL.value,
            Reason.ACTIVATION_FAILED.value,
            detail,
            now,
            fence=ref.fence,
        ):
            self.core.audit(
                conn,
                self,
                ref.object_id,
                "status_changed",
                ref.actor,
                Reason.ACTIVATION_FAILED.value,
                {
                    "from": "initializing",
                    "to": "non_operational",
                    "detail": detail,
                    "activation_id": ref.id,
                    "fence": ref.fence,
                },
            )
            # Initializing means the init may have been sent (a soft time limit during it, say).
            self.hold(conn, ref.object_id, ref.actor, now + timedelta(seconds=self.wait.init_max_s), ref.id)

    def hold(self, conn: Conn, host_id: str, actor: str, until: datetime, activation_id: str) -> None:
        """No new init to the host before ``until``: an init's outcome was not seen, it may run."""
        self.repos.hosts.hold_init(conn, host_id, until)
        self.core.audit(
            conn,
            self,
            host_id,
            "init_held",
            actor,
            "init_outcome_unknown",
            {"until": until.isoformat(), "activation_id": activation_id},
        )
        log.warning("host %s: no new init before %s (init outcome unknown)", host_id, until.isoformat())

    # -- the work --------------------------------------------------------------------------

    def work(self, run: Run) -> Outcome:
        """Re-check on a fresh report, set initializing, send the init; close, or leave it sent."""
        subject = self.subject(run)
        if subject is None:
            return self.core.close(
                self,
                run,
                Closing(
                    ActivationState.SKIPPED, "host_missing", "host or its cluster is no longer registered"
                ),
            )
        report = self.agents.get_report(subject.target, self.clock())
        now = self.clock()
        assessment = assess(report, subject.cluster, now, self.report_max_age_s)
        decision = recheck(subject.host, assessment, run.trigger, subject.gates, now, subject.cluster)
        if not decision.is_activate:
            return self._skip(run, subject, decision, assessment)
        subject = replace(subject, protocol=report.protocol)
        self.core.guard(self, run)
        held = agent_fence.tell_agent(self, run, subject, report.agent)
        if held is not None:
            return held
        self._mark_initializing(run, subject, checked=(now, report.reported_at))
        failpoints.hit(self.failpoints, "stop_before_init")
        try:
            self.core.guard(self, run)
        except LockLost as exc:
            # Nothing was sent: the host goes back to where it was, and nobody is charged.
            log.warning(
                "host %s: activation %s lost its lock before init; no agent call",
                run.object_id,
                run.activation_id,
            )
            return self.core.close(self, run, Closing.lock_lost(str(exc)), self.restore(run, subject))
        return host_init.send_init(self, run, subject)

    def settle(self, run: Run, ref: ActivationRef) -> Outcome:
        """A later step of a sent init: ask, close, or ask again later."""
        return host_init.settle(self, run, ref)

    def subject(self, run: Run) -> Subject | None:
        """Load the host, its effective cluster and the gates; None when it is gone."""
        with self.core.statements() as conn:  # reads only
            loaded = self.repos.hosts.get_host(conn, run.object_id)
            cluster = self.repos.hosts.get_cluster(conn, loaded[0].cluster_id) if loaded else None
            pauses = self.repos.safety.list_pauses(conn)
            domains = self.repos.storage.all_domains(conn)
            # A resumed activation finds its host initializing: what it was is on the record.
            row = self.repos.activations.get(conn, run.activation_id) if run.resumed else None
        if loaded is None or cluster is None:
            return None
        maintenance = domains_by_status(domains, DomainStatus.MAINTENANCE)
        gates = Gates(pauses=pauses, inactive_domains=domains_by_status(domains, DomainStatus.INACTIVE))
        was = HostStatus(row.was_status) if row is not None and row.was_status else None
        return Subject(loaded[0], effective_cluster(cluster, maintenance), gates, was_status=was)

    def _skip(self, run: Run, subject: Subject, decision: Decision, assessment: Assessment) -> Outcome:
        # An earlier attempt of this activation may have left the host initializing: it returns
        # to non_operational, never stays initializing with nothing in flight.
        stuck = subject.host.status is HostStatus.INITIALIZING
        problem = assessment.primary
        reason = decision.code
        if stuck:
            reason = problem.reason.value if problem else Reason.ACTIVATION_FAILED.value
        closing = Closing(ActivationState.SKIPPED, decision.code, decision.detail, reason=reason)
        end = HostEnd(None)
        if stuck:
            # Initializing: the earlier attempt may have sent its init, which may still run (a v1
            # agent refuses no second one): no new init before the longest init time is over.
            hold = self.clock() + timedelta(seconds=self.wait.init_max_s)
            end = HostEnd(HostStatus.NON_OPERATIONAL, hold_until=hold)
        return self.core.close(self, run, closing, self.writes(run, subject, closing, end))

    def _mark_initializing(self, run: Run, subject: Subject, *, checked: tuple[datetime, datetime]) -> None:
        """Set initializing; the audit entry says when the fresh report was checked and dated."""
        checked_at, report_at = checked
        with self.core.db.transaction() as conn:
            if subject.host.status is not HostStatus.INITIALIZING:
                # Kept for a retried attempt of this activation, which finds the host initializing
                # (whether it was is not read: the status write below checks the same fence).
                self.repos.activations.note_was_status(
                    conn, run.activation_id, fence=run.fence, was_status=subject.host.status.value
                )
            self._status(
                conn,
                run,
                subject.host.status,
                HostStatus.INITIALIZING,
                None,
                f"activation {run.activation_id}",
                self.clock(),
                audit_reason="activation",
                extra={"checked_at": checked_at.isoformat(), "report_at": report_at.isoformat()},
            )

    def restore(self, run: Run, subject: Subject) -> CloseWrites:
        """Writes that put the host back where it was before ``initializing`` (no init sent)."""
        host = subject.host
        stuck = host.status is HostStatus.INITIALIZING
        was = HostStatus.NON_OPERATIONAL if stuck else host.status
        reason = Reason.ACTIVATION_FAILED.value if stuck else host.reason

        def write(conn: Conn, now: datetime) -> None:
            self._status(
                conn, run, HostStatus.INITIALIZING, was, reason, host.detail, now, audit_reason="lock_lost"
            )

        return write

    def _status(
        self,
        conn: Conn,
        run: Run,
        was: HostStatus,
        status: HostStatus,
        reason: str | None,
        detail: str | None,
        now: datetime,
        *,
        audit_reason: str,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Set the host's status under the run's fence, audited (``extra`` added to the details).

        Raises:
            StaleFence: the host's fence is no longer the run's.
        """
        if not self.repos.hosts.set_status(
            conn, run.object_id, status.value, reason, detail, now, fence=run.fence
        ):
            raise StaleFence(f"host {run.object_id}: fence {run.fence} superseded")
        details = {
            "from": was.value,
            "to": status.value,
            "activation_id": run.activation_id,
            "fence": run.fence,
        }
        if detail is not None and status is not HostStatus.INITIALIZING:
            details["detail"] = detail
        details.update(extra or {})
        self.core.audit(conn, self, run.object_id, "status_changed", run.actor, audit_reason, details)

    def writes(self, run: Run, subject: Subject, closing: Closing, end: HostEnd) -> CloseWrites:
        """The host's writes when its activation closes: status, accounting, fence."""

        def write(conn: Conn, now: datetime) -> None:
            if end.status is not None:
                self._set_status(conn, run, closing, end.status, now)
            if closing.state in (ActivationState.DONE, ActivationState.FAILED):
                self.accounting.settle(
                    conn, run, subject.before, now, succeeded=closing.state == ActivationState.DONE
                )
            if end.unknown:
                self.accounting.defer_unknown(conn, run, now, closing.outcome)
            if end.hold_until is not None:
                self.hold(conn, run.object_id, run.actor, end.hold_until, run.activation_id)

        return write

    def _set_status(self, conn: Conn, run: Run, closing: Closing, status: HostStatus, now: datetime) -> None:
        reason = closing.reason if status is not HostStatus.UP else None
        self._status(
            conn,
            run,
            HostStatus.INITIALIZING,
            status,
            reason,
            closing.detail,
            now,
            audit_reason=closing.reason or "activated",
        )
