"""Activations: one fenced core (``core``) and its two configurations, hosts and storage domains.

Every write of an activation is fenced: it changes nothing unless the object's fence is still the
token this activation was issued. A holder that lost its lock therefore writes nothing.
"""

from __future__ import annotations

import random

from autorecovery.adapters.agents import AgentClient
from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.ports import LockFactory
from autorecovery.services import Clock
from autorecovery.services.activation.accounting import Accounting, RecoverySafety
from autorecovery.services.activation.core import FencedActivations
from autorecovery.services.activation.host_init import InitWait
from autorecovery.services.activation.hosts import HostKind
from autorecovery.services.activation.kinds import LockBusyRetry, Outcome

__all__ = ["ActivationService", "FencedActivations", "InitWait", "LockBusyRetry", "Outcome", "RecoverySafety"]


class ActivationService:
    """Runs the steps of host activations (``init_vds_on_up``, ``check_init``) on the fenced core."""

    def __init__(
        self,
        db: Database,
        lock: LockFactory,
        agents: AgentClient,
        *,
        lock_ttl_s: float,
        report_max_age_s: float,
        clock: Clock,
        repos: Repos = PG_REPOS,
        failpoints: str = "",
        safety: RecoverySafety = RecoverySafety(),  # noqa: B008 - frozen, shared safely
        rng: random.Random | None = None,
        wait: InitWait = InitWait(),  # noqa: B008 - frozen, shared safely
    ) -> None:
        self.core = FencedActivations(db, lock, clock=clock, lock_ttl_s=lock_ttl_s, poll_s=wait.poll_s)
        accounting = Accounting(repos, safety, rng or random.Random())  # noqa: S311 - jitter
        self.hosts = HostKind(
            self.core,
            repos,
            agents,
            accounting,
            clock=clock,
            report_max_age_s=report_max_age_s,
            failpoints=failpoints,
            wait=wait,
        )

    def run(self, activation_id: str, host_id: str, task_id: str | None = None) -> Outcome:
        """The first step: begin, re-check, send the init; close on an answer, else leave it sent.

        Raises:
            LockBusyRetry: another delivery of this activation holds the host's lock.
            TransientError: Redis or PostgreSQL failed before the outcome was recorded.
        """
        return self.core.run(self.hosts, activation_id, host_id, task_id)

    def check(self, activation_id: str, host_id: str, task_id: str | None = None) -> Outcome:
        """A later step of a sent init: ask the agent, close under the fence, or ask again later.

        Raises:
            TransientError: Redis or PostgreSQL failed before the outcome was recorded.
        """
        return self.core.check(self.hosts, activation_id, host_id, task_id)

    def is_queued(self, activation_id: str) -> bool:
        """True while the activation has not begun (a retry of its message must not outlive it)."""
        return self.core.is_queued(self.hosts, activation_id)

    def give_up(self, activation_id: str, host_id: str, error: str) -> bool:
        """Close an activation whose retries ran out, unless a live holder has its lock."""
        return self.core.give_up(self.hosts, activation_id, host_id, error)
