"""Storage-domain activations (``activate_storage_domain``) as a configuration of the core.

The same machine as hosts: begin (the domain's fence), re-check the domain (an auto activation
only of an inactive domain with autorecovery on, never of one in maintenance), then the agents of
hosts whose fresh report reaches it are asked, one after another, to connect it under the
domain's fence; the domain is ``active`` once one succeeds. A connect whose answer was not seen
leaves the activation ``sent``: the record holds the domain until its deadline (no second
connect meanwhile), then it is abandoned and the next tick tries again. An admin putting the
domain in maintenance abandons it and bumps its fence.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from autorecovery.adapters import keys
from autorecovery.adapters.agents import AgentClient, InitResult, Target
from autorecovery.adapters.store.db import Conn
from autorecovery.ports import AuditRepo
from autorecovery.services import Clock
from autorecovery.services.activation.core import FencedActivations
from autorecovery.services.activation.kinds import ActivationRef, Closing, DomainStore, Naming, Outcome, Run
from models.domain import ActivationState, DomainStatus, Trigger
from models.errors import AgentBusy, AgentUnavailable, InitOutcomeUnknown, StaleFence

log = logging.getLogger(__name__)


class DomainKind(Naming):
    """Storage domains: the domain's lock, its activation records, connect through a host."""

    noun = "storage domain"
    object_type = "storage_domain"
    id_field = "sd_id"

    def __init__(
        self,
        core: FencedActivations,
        repos: DomainStore,
        agents: AgentClient,
        *,
        clock: Clock,
        report_max_age_s: float,
        hold_s: float = 20.0,
    ) -> None:
        self.hold_s = hold_s
        self.core = core
        self.repos = repos
        self.agents = agents
        self.clock = clock
        self.report_max_age_s = report_max_age_s

    @property
    def audit_log(self) -> AuditRepo:
        """Domain events go to the audit log."""
        return self.repos.audit

    def record_step(
        self,
        activation_id: str,
        step: str,
        task_id: str | None,
        outcome: str,
        next_check: str | None = None,
    ) -> None:
        """Domain steps are in the task's log and Flower; only host steps are stored (any
        check step of a domain may act: its checks only close at the deadline)."""
        log.debug("storage domain activation %s: %s step %s: %s", activation_id, step, task_id, outcome)

    def lock_key(self, object_id: str) -> str:
        """The domain's lock."""
        return keys.storage_domain_lock(object_id)

    def load(self, conn: Conn, activation_id: str) -> ActivationRef | None:
        """Read a domain activation."""
        row = self.repos.storage.get_activation(conn, activation_id)
        if row is None:
            return None
        return ActivationRef(
            row["id"],
            row["sd_id"],
            row["state"],
            row["fence"],
            row["trigger"],
            row["actor"],
            row["outcome"],
            answer=row.get("answer"),
            target=row.get("target"),
            past_deadline=bool(row.get("past_deadline")),
        )

    def begin(self, conn: Conn, activation_id: str, now: datetime) -> int | None:
        """Issue the domain's next fence to the activation."""
        return self.repos.storage.begin_activation(conn, activation_id, now)

    def finish(
        self, conn: Conn, activation_id: str, closing: Closing, now: datetime, fence: int | None
    ) -> bool:
        """Close a domain activation (fenced)."""
        return self.repos.storage.finish_activation(
            conn,
            activation_id,
            state=closing.state,
            outcome=closing.outcome,
            detail=closing.detail,
            now=now,
            fence=fence,
        )

    def raise_fence(self, conn: Conn, object_id: str, fence: int, at_least: int) -> bool:
        """Move the domain's fence up."""
        return self.repos.storage.raise_fence(conn, object_id, fence, at_least)

    def release(self, conn: Conn, ref: ActivationRef, error: str, now: datetime) -> None:
        """A given-up domain activation leaves the domain as it is (inactive until connected)."""

    def settle(self, run: Run, ref: ActivationRef) -> Outcome:
        """A sent connect: ask the host it went through how it went; past its deadline, abandoned."""
        result = self._ask(run, ref.target) if ref.target else None
        if result is not None:
            if result.ok:
                return self._close(run, ok=True, detail=f"connected through host {ref.target} (asked)")
            return self._close(run, ok=False, detail=f"host {ref.target} did not connect it: {result.detail}")
        if not ref.past_deadline:
            return self.outcome(
                run.activation_id,
                run.object_id,
                "sent",
                "connect outcome not known yet",
                run.fence,
                check_in_s=self.core.poll_s,
            )
        closing = Closing(
            ActivationState.ABANDONED,
            "outcome_unknown",
            f"connect outcome unknown after {self.hold_s:g}s; the next tick tries again",
        )
        return self.core.close(self, run, closing)

    def _ask(self, run: Run, host_id: str) -> InitResult | None:
        """The connect's result, once its host's agent (v2) says it is done; else None."""
        with self.core.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        if loaded is None:
            return None
        try:
            status = self.agents.connect_status(
                Target(host_id, loaded.host.agent_url), run.object_id, run.activation_id
            )
        except AgentUnavailable as exc:
            log.info("storage domain %s: connect status unanswered by %s: %s", run.object_id, host_id, exc)
            return None
        return None if status is None else status.result()

    def _recheck(self, run: Run) -> str | None:
        """Why the domain is no longer to be activated (None: it still is)."""
        with self.core.db.transaction() as conn:
            sd = self.repos.storage.get(conn, run.object_id)
        if sd is None:
            return "storage domain is no longer registered"
        if sd.status is DomainStatus.ACTIVE:
            return "storage domain is already active"
        if run.trigger is Trigger.AUTO and sd.status is DomainStatus.MAINTENANCE:
            return "storage domain is in maintenance"
        if run.trigger is Trigger.AUTO and not sd.autorecovery:
            return "autorecovery is off for the storage domain"
        return None

    def work(self, run: Run) -> Outcome:
        """Re-check, then ask each host that reaches the domain to connect it, until one succeeds."""
        why_not = self._recheck(run)
        if why_not is not None:
            log.info(
                "storage domain %s: activation %s skipped: %s", run.object_id, run.activation_id, why_not
            )
            return self.core.close(self, run, Closing(ActivationState.SKIPPED, "not_needed", why_not))
        fresh = self.clock() - timedelta(seconds=self.report_max_age_s)
        with self.core.db.transaction() as conn:
            targets = self.repos.storage.connect_targets(conn, run.object_id, fresh)
        log.info(
            "storage domain %s: activation %s has %d candidate hosts",
            run.object_id,
            run.activation_id,
            len(targets),
        )
        tried: list[str] = []
        for target in targets:
            tried.append(target["id"])
            self.core.guard(self, run)
            answer = self._connect(run, Target(target["id"], target["agent_url"]))
            if answer == "ok":
                return self._close(run, ok=True, detail=f"connected through host {target['id']}")
            if answer in ("running", "unknown"):
                # The connect runs (or may run) there: hold the domain, send no second one.
                return self._sent(run, target["id"], answer)
            if answer != "no":
                return self._close(run, ok=False, detail=answer)
        return self._close(
            run, ok=False, detail=f"no host could connect it (tried: {', '.join(tried) or 'none'})"
        )

    def _sent(self, run: Run, host_id: str, answer: str) -> Outcome:
        with self.core.db.transaction() as conn:
            if not self.repos.storage.mark_activation_sent(
                conn, run.activation_id, fence=run.fence, answer=answer, target=host_id, hold_s=self.hold_s
            ):
                raise StaleFence(f"activation {run.activation_id} no longer holds fence {run.fence}")
            self.core.audit(
                conn,
                self,
                run.object_id,
                "connect_sent",
                run.actor,
                f"agent answer: {answer}",
                {"activation_id": run.activation_id, "fence": run.fence, "host_id": host_id},
            )
        log.info(
            "storage domain %s: connect through %s %s; held %gs at most",
            run.object_id,
            host_id,
            answer,
            self.hold_s,
        )
        return self.outcome(
            run.activation_id,
            run.object_id,
            "sent",
            f"connect through {host_id}: {answer}",
            run.fence,
            check_in_s=self.core.poll_s,
        )

    def _connect(self, run: Run, target: Target) -> str:
        """Ask one host: "ok", "no" (try the next), "running" (a v2 agent runs it), "unknown"
        (unseen), or why to stop."""
        try:
            result = self.agents.start_connect(target, run.object_id, run.fence, run.activation_id)
        except StaleFence as exc:
            return f"host {target.host_id} refused fence {run.fence}: {exc}"
        except InitOutcomeUnknown as exc:
            log.warning(
                "storage domain %s: connect through %s unseen: %s", run.object_id, target.host_id, exc
            )
            return "unknown"
        except (AgentUnavailable, AgentBusy) as exc:
            log.warning("storage domain %s: %s did not connect it: %s", run.object_id, target.host_id, exc)
            return "no"
        if result is None:
            return "running"
        return "ok" if result.ok else "no"

    def _close(self, run: Run, *, ok: bool, detail: str) -> Outcome:
        if not ok:
            return self.core.close(
                self, run, Closing(ActivationState.FAILED, "failed", detail, reason="failed")
            )

        def activate(conn: Conn, now: datetime) -> None:
            if not self.repos.storage.set_status(
                conn, run.object_id, DomainStatus.ACTIVE.value, detail, now, fence=run.fence
            ):
                raise StaleFence(f"storage domain {run.object_id}: fence {run.fence} superseded")

        return self.core.close(self, run, Closing(ActivationState.DONE, "active", detail), activate)
