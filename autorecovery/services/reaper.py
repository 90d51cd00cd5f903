"""Housekeeping: reap stuck activations, re-send lost ones, tell agents new fences.

One call per housekeeping run (``Reaper.run``, from ``HousekeepingService``). Every lease is
compared on PostgreSQL's clock, so clock skew between machines neither abandons live work nor reaps
a just-queued activation. Whenever an activation is taken from its holder the store bumps the host's
fence and marks it pending; the agent then learns it here (``POST /fence``), best effort, round-
robin: an agent that does not answer is asked again after a backoff, so dead agents do not hold up
the live ones.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from autorecovery.adapters.agents import AgentClient, Target
from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.ports import CheckSender
from autorecovery.ports.rows import FencePush
from autorecovery.services import Enqueuer
from models.errors import AgentUnavailable, BrokerUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReaperConfig:
    """How long leases last, when a queued activation is sent again, how many fences per tick.

    ``running_ttl_s`` is how long a step may hold a record: a ``sending`` one that long after it
    began, or a ``sent`` one that long past its deadline, has lost its holder (its process is
    past its hard time limit and its lock's TTL) and is reaped.
    """

    queued_ttl_s: float
    running_ttl_s: float
    resend_after_s: float = 20.0
    max_resends: int = 2
    #: Fence pushes per run, at most (each one call, with the agent call's timeout).
    fence_batch: int = 200
    fence_concurrency: int = 32
    #: An agent that did not answer is asked again after this, doubling up to the maximum.
    fence_backoff_s: float = 10.0
    fence_backoff_max_s: float = 300.0
    #: A host whose ``sending`` record is reaped may still run its init: no new init for this long.
    init_hold_s: float = 120.0
    #: A ``sent`` record with no step for this long lost its check message: sent again (None: never).
    resend_check_after_s: float | None = None


@dataclass
class ReapCounts:
    """What one housekeeping run did, for its summary."""

    reaped: int = 0
    resent: int = 0
    checks_resent: int = 0
    fences_pushed: int = 0
    fences_failed: int = 0


class Reaper:
    """Abandons stuck activations, re-sends queued ones whose message may be lost, pushes fences."""

    def __init__(
        self,
        db: Database,
        agents: AgentClient,
        enqueue: Enqueuer,
        cfg: ReaperConfig,
        repos: Repos = PG_REPOS,
        enqueue_check: CheckSender | None = None,
    ) -> None:
        self.db = db
        self.agents = agents
        self.enqueue = enqueue
        self.enqueue_check = enqueue_check
        self.cfg = cfg
        self.repos = repos

    def run(self, now: datetime) -> ReapCounts:
        """Do one housekeeping run; ``now`` (the caller's clock) only stamps the audit."""
        counts = ReapCounts(reaped=self._reap(now), resent=self._resend(now))
        counts.checks_resent = self._resend_checks(now)
        counts.fences_pushed, counts.fences_failed = self._push_fences()
        return counts

    def _reap(self, now: datetime) -> int:
        """Abandon activations past their lease and reset orphaned hosts; return how many."""
        cfg = self.cfg
        with self.db.transaction() as conn:
            reaped = self.repos.activations.reap(
                conn,
                now=now,
                queued_ttl_s=cfg.queued_ttl_s,
                running_ttl_s=cfg.running_ttl_s,
                init_hold_s=cfg.init_hold_s,
            )
            orphans = self.repos.activations.reset_orphans(
                conn, now=now, before=now - timedelta(seconds=cfg.running_ttl_s)
            )
            domains = self.repos.storage.reap_activations(
                conn, now=now, queued_ttl_s=cfg.queued_ttl_s, running_ttl_s=cfg.running_ttl_s
            )
        for row in reaped:
            log.warning("host %s: activation %s abandoned (was %s)", row["host_id"], row["id"], row["was"])
        for host_id in orphans:
            log.warning("host %s: was initializing with no activation in flight; non_operational", host_id)
        if domains:
            log.warning("tick: %s storage domain activation(s) abandoned", domains)
        return len(reaped) + len(orphans)

    def _resend(self, now: datetime) -> int:
        """Send again queued activations no worker started in time; return how many were sent."""
        if self.cfg.max_resends <= 0:
            return 0
        with self.db.transaction() as conn:
            again = self.repos.activations.resend_queued(
                conn, now=now, after_s=self.cfg.resend_after_s, max_resends=self.cfg.max_resends
            )
        sent = 0
        for row in again:
            # The task id is the activation id: if the first message was not lost after all, the
            # later delivery is a duplicate delivery of the same activation, which finds it
            # started or closed (absorbing duplicates is the activation's job, as with RabbitMQ).
            try:
                self.enqueue(row["id"], row["host_id"], row["trigger"], row["actor"])
            except BrokerUnavailable as exc:
                log.warning("host %s: cannot re-send activation %s: %s", row["host_id"], row["id"], exc)
                continue
            sent += 1
            log.warning(
                "host %s: activation %s not started in time; sent again (send %s)",
                row["host_id"],
                row["id"],
                row["sends"],
            )
        return sent

    def _resend_checks(self, now: datetime) -> int:
        """Send a check step again to sent activations whose check message was lost; how many.

        Without it such an activation waits out its deadline and the reap's grace, holding its
        host. The store gives each a new check token first: any other check message of it that
        still runs is superseded, so there is never more than one chain of checks.
        """
        after_s = self.cfg.resend_check_after_s
        if after_s is None or self.enqueue_check is None:
            return 0
        with self.db.transaction() as conn:
            again = self.repos.activations.resend_checks(conn, now=now, after_s=after_s)
        sent = 0
        for row in again:
            host_id, activation_id = row["host_id"], row["id"]
            try:
                self.enqueue_check(activation_id, host_id, row["trigger"], row["actor"], row["check_task_id"])
            except BrokerUnavailable as exc:
                log.warning("host %s: check of %s not re-sent: %s", host_id, activation_id, exc)
                continue
            sent += 1
            log.warning("host %s: %s: no step for %gs; check re-sent", host_id, activation_id, after_s)
        return sent

    def _push_fences(self) -> tuple[int, int]:
        """Tell agents the fences they have not learnt; return (pushed, failed).

        Pushed ``fence_concurrency`` at a time, each round recorded as it ends: an agent told
        early in a run is not left marked while slow agents of the same run time out.
        """
        with self.db.transaction() as conn:
            pending = self.repos.hosts.pending_fences(conn, self.cfg.fence_batch)
        if not pending:
            return 0, 0
        workers = max(1, min(self.cfg.fence_concurrency, len(pending)))
        pushed = failed = 0
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fence") as pool:
            for start in range(0, len(pending), workers):
                chunk = pending[start : start + workers]
                answers = list(pool.map(self._push_one, chunk))
                answered = [p for p, ok in zip(chunk, answers, strict=True) if ok]
                missed = [p.host_id for p, ok in zip(chunk, answers, strict=True) if not ok]
                with self.db.transaction() as conn:
                    self.repos.hosts.clear_fence_pending(conn, answered)
                    self.repos.hosts.fence_push_failed(
                        conn, missed, self.cfg.fence_backoff_s, self.cfg.fence_backoff_max_s
                    )
                pushed, failed = pushed + len(answered), failed + len(missed)
        return pushed, failed

    def _push_one(self, push: FencePush) -> bool:
        """Raise one agent's fence; True when it answered (a v1 agent, with no route, too)."""
        try:
            highest = self.agents.raise_fence(Target(push.host_id, push.agent_url), push.fence)
        except AgentUnavailable as exc:
            log.warning("host %s: agent not told fence %s yet: %s", push.host_id, push.fence, exc)
            return False
        if highest is None:
            log.info("host %s: agent has no /fence route (v1); fence %s not pushed", push.host_id, push.fence)
        else:
            log.info("host %s: agent fence raised to %s (asked %s)", push.host_id, highest, push.fence)
        return True

