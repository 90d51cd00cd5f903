"""Storage-domain activations (``activate_storage_domain``) as a configuration of the core.

The agents of hosts whose fresh report reaches the domain are asked, one after another, to
connect it under the domain's fence; the domain is ``active`` once one succeeds.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from autorecovery.adapters import keys
from autorecovery.adapters.agents import AgentClient, Target
from autorecovery.adapters.store.db import Conn
from autorecovery.services import Clock
from autorecovery.services.activation.core import FencedActivations
from autorecovery.services.activation.kinds import ActivationRef, Closing, Naming, Outcome, Run
from models.domain import ActivationState, DomainStatus
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
        repos: Any,
        agents: AgentClient,
        *,
        clock: Clock,
        report_max_age_s: float,
    ) -> None:
        self.core = core
        self.repos = repos
        self.agents = agents
        self.clock = clock
        self.report_max_age_s = report_max_age_s

    def lock_key(self, object_id: str) -> str:
        """The domain's lock."""
        return keys.storage_domain_lock(object_id)

    def load(self, conn: Conn, activation_id: str) -> ActivationRef | None:
        """Read a domain activation."""
        row = self.repos.storage.get_activation(conn, activation_id)
        if row is None:
            return None
        return ActivationRef(
            row["id"], row["sd_id"], row["state"], row["fence"], row["trigger"], row["actor"], row["outcome"]
        )

    def begin(self, conn: Conn, activation_id: str, now: datetime) -> int | None:
        """Issue the domain's next fence to the activation."""
        fence: int | None = self.repos.storage.begin_activation(conn, activation_id, now)
        return fence

    def finish(
        self, conn: Conn, activation_id: str, closing: Closing, now: datetime, fence: int | None
    ) -> bool:
        """Close a domain activation (fenced)."""
        return bool(
            self.repos.storage.finish_activation(
                conn,
                activation_id,
                state=closing.state,
                outcome=closing.outcome,
                detail=closing.detail,
                now=now,
                fence=fence,
            )
        )

    def raise_fence(self, conn: Conn, object_id: str, fence: int, at_least: int) -> bool:
        """Move the domain's fence up."""
        return bool(self.repos.storage.raise_fence(conn, object_id, fence, at_least))

    def release(self, conn: Conn, ref: ActivationRef, error: str, now: datetime) -> None:
        """A given-up domain activation leaves the domain as it is (inactive until connected)."""

    def work(self, run: Run) -> Outcome:
        """Ask each host that reaches the domain to connect it, until one succeeds."""
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
        unknown: list[str] = []
        for target in targets:
            tried.append(target["id"])
            self.core.guard(self, run)
            answer = self._connect(run, Target(target["id"], target["agent_url"]))
            if answer == "ok":
                return self._close(run, ok=True, detail=f"connected through host {target['id']}")
            if answer == "unknown":
                unknown.append(target["id"])
            elif answer != "no":
                return self._close(run, ok=False, detail=answer)
        if unknown:
            closing = Closing(
                ActivationState.ABANDONED,
                "outcome_unknown",
                f"no answer seen from {', '.join(unknown)}; the next tick tries again",
            )
            return self.core.close(self, run, closing)
        return self._close(
            run, ok=False, detail=f"no host could connect it (tried: {', '.join(tried) or 'none'})"
        )

    def _connect(self, run: Run, target: Target) -> str:
        """Ask one host: "ok", "no" (try the next), "unknown" (unseen), or why to stop."""
        try:
            result = self.agents.connect_storage_domain(target, run.object_id, run.fence, run.activation_id)
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

        return self.core.close(self, run, Closing(ActivationState.SUCCEEDED, "active", detail), activate)
