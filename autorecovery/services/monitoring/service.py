"""The monitoring tick as a coordinator and batches that any worker process runs.

``tick`` claims one tick per interval (a duplicate beat or redelivery notices and stops; a tick
still running is not piled on), cuts the fleet into batches and sends them: claim plus dispatch (the
housekeeping runs in a task of its own, ``services/housekeeping.py``). ``run_batch`` pulls, stores,
transitions and decides one batch; the batch that completes its tick closes it (observer gate,
incidents, storage domains, one admission under the caps). Without a batch sender the batches run
inline, one after the other, in this process.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from autorecovery.adapters.agents import AgentClient
from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import STATEMENTS, Conn, Database
from autorecovery.adapters.store.ticks import FINISH_BATCH_STATEMENTS
from autorecovery.ports.rows import BatchDone, BatchStart, BatchWindow, HostRow, PushedCut
from autorecovery.services import Clock, Enqueuer
from autorecovery.services.monitoring.batch import Context, assess_batch, load_context, record_batch
from autorecovery.services.monitoring.closing import Closer
from autorecovery.services.monitoring.config import (
    COORDINATOR_COUNTS,
    BatchSender,
    BatchSpec,
    TickConfig,
    TickResult,
)
from models.changes import ReportDigests
from models.errors import BrokerUnavailable, StoreUnavailable

log = logging.getLogger(__name__)


class MonitoringService:
    """Runs ticks: claims them, fans their batches out, and closes each once."""

    def __init__(
        self,
        db: Database,
        agents: AgentClient,
        enqueue: Enqueuer,
        cfg: TickConfig,
        clock: Clock,
        repos: Repos = PG_REPOS,
        redis_ping: Callable[[], bool] = lambda: True,
        queue_domains: Callable[[], list[str]] = lambda: [],
        send_batch: BatchSender | None = None,
    ) -> None:
        self.db = db
        self.repos = repos
        self.agents = agents
        self.cfg = cfg
        self.clock = clock
        self.send_batch = send_batch
        self.closer = Closer(db, repos, enqueue, cfg, clock, redis_ping, queue_domains)
        self._inline: list[TickResult] = []
        #: The context of the last tick this process ran a batch of: (tick id, (context, key)).
        self._tick_context: tuple[str, tuple[Context, str | None]] | None = None
        #: The digests of the reports this process pulled last, by host (``models.changes``).
        self._digests = ReportDigests()

    def tick(self, tick_id: str | None = None) -> TickResult:
        """Claim a tick and send its batches; inline, run them and return the whole tick.

        With a batch sender the result covers the coordinator's part only (or why the tick was
        skipped); the batch that completes the tick returns the whole tick's result.
        """
        tick_id = tick_id or str(uuid.uuid4())
        statements_before = STATEMENTS.count
        now = self.clock()
        pushed = PushedCut(  # the hosts that need no pull (``needs_pull``) share bigger batches
            size=self.cfg.pushed_batch_size,
            after=now - timedelta(seconds=self.cfg.tick_interval_s),
            before=now + timedelta(seconds=self.cfg.max_clock_skew_s),
        )
        with self.db.transaction() as conn:
            claim = self.repos.ticks.claim(
                conn,
                tick_id,
                batch_size=self.cfg.batch_size,
                min_spacing_s=self.cfg.min_spacing_s,
                deadline_s=self.cfg.deadline_s,
                pushed=pushed,
            )
        if claim.tick_id is None:
            log.info("tick %s skipped: %s", tick_id, claim.refused)
            return TickResult(tick_id=tick_id, skipped=claim.refused)
        if claim.took_over:
            log.warning(
                "tick %s: took over from tick %s, which did not finish in time", tick_id, claim.took_over
            )
        result = TickResult(tick_id=tick_id, took_over=claim.took_over, batches=len(claim.bounds))
        try:
            return self._start(result, claim.bounds, statements_before)
        except Exception as exc:
            self._abandon(tick_id, f"coordinator failed: {type(exc).__name__}: {exc}")
            raise

    def _start(self, result: TickResult, bounds: tuple[str, ...], statements_before: int) -> TickResult:
        """Keep the tick's context and note the claim, then the batches: sent, or run here."""
        self._keep_context(result.tick_id)
        result.statements = STATEMENTS.count - statements_before + 1  # and the note below
        with self.db.transaction() as conn:
            self.repos.ticks.note(conn, result.tick_id, result.as_dict())
        specs = [
            BatchSpec(result.tick_id, i, "" if i == 0 else lo, bounds[i + 1] if i + 1 < len(bounds) else None)
            for i, lo in enumerate(bounds)
        ]
        if not specs:
            with self.db.transaction() as conn:
                self.repos.ticks.start_closing(conn, result.tick_id)
            return self._close(result.tick_id)
        return self._dispatch(result, specs)

    def _dispatch(self, result: TickResult, specs: list[BatchSpec]) -> TickResult:
        if self.send_batch is None:
            closed = [done for spec in specs if (done := self.run_batch(spec)) is not None]
            return closed[-1] if closed else result
        try:
            for spec in specs:
                self.send_batch(spec)
        except BrokerUnavailable as exc:
            self._abandon(result.tick_id, f"cannot send its batches: {exc}")
            result.skipped = f"abandoned: cannot send its batches: {exc}"
            return result
        log.info("tick %s: %d batches sent", result.tick_id, len(specs))
        return result

    def run_batch(self, spec: BatchSpec) -> TickResult | None:
        """Run one batch of a tick; return the whole tick's result if this batch closed it.

        A batch that fails abandons its tick at once, so the next tick need not wait for the
        deadline to take over.
        """
        try:
            return self._run_batch(spec)
        except Exception as exc:
            self._abandon(spec.tick_id, f"batch {spec.idx} failed: {type(exc).__name__}: {exc}")
            raise

    def _abandon(self, tick_id: str, detail: str) -> None:
        try:
            with self.db.transaction() as conn:
                abandoned = self.repos.ticks.abandon(conn, tick_id, detail)
        except StoreUnavailable as exc:
            log.error("tick %s: cannot record it abandoned (%s); the next tick takes over", tick_id, exc)
            return
        if abandoned:
            log.error("tick %s abandoned: %s", tick_id, detail)

    def _run_batch(self, spec: BatchSpec) -> TickResult | None:
        """Read, pull, evaluate what changed, write: one pooled connection, five round trips.

        Checking the pooled connection is one; reading the batch (a few columns of the hosts
        the store cannot tell settled, the counts of the settled ones, whether to run, the tick's
        context) one pipeline; reading the whole rows of the hosts to evaluate again, after the
        pull, one more, only when there are any (a steady fleet has none); writing it is one
        transaction in a pipeline: the tick's row lock and state first (a batch of a tick that
        ended writes nothing), then reports, decisions, evaluations and transitions, whose count
        goes in the batch's summary, recorded in its tick with the commit.
        """
        statements_before = STATEMENTS.count
        with self.db.held() as held:
            with self.db.pipeline(held) as conn:
                read = self.repos.hosts.batch_changed(conn, spec.lo, spec.hi, self._window(spec.tick_id))
                starting = self.repos.ticks.batch_start(
                    conn, spec.tick_id, spec.idx, with_context=self._cached(spec.tick_id) is None
                )
            start = starting()
            if start.refused is not None:
                log.info("tick %s: batch %d not run: %s", spec.tick_id, spec.idx, start.refused)
                return None
            batch, settled = read()
            context, key = self._context(spec.tick_id, start, held)
            found = assess_batch(
                batch,
                settled,
                context,
                key,
                self.agents,
                self.cfg,
                self.clock,
                lambda ids: self._rows(held, ids),
                self._digests,
            )
            now = self.clock()
            outcome = found.outcome
            done = BatchDone(recorded=False, closes=False)
            with self.db.pipeline(held, atomic=True) as conn:
                # Under the tick's row lock, first: a batch whose tick ended meanwhile (abandoned,
                # taken over) writes nothing; an abandon that comes later waits for this one.
                if self.repos.ticks.hold_running(conn, spec.tick_id):
                    transitions = record_batch(conn, self.repos, found, now)
                    outcome.counts["transitions"] = transitions()
                    # The statements that record the batch in its tick are counted too.
                    outcome.counts["statements"] = (
                        STATEMENTS.count - statements_before + FINISH_BATCH_STATEMENTS
                    )
                    finishing = self.repos.ticks.queue_finish_batch(
                        conn, spec.tick_id, spec.idx, outcome.counts, outcome.candidates
                    )
                else:
                    finishing = None
            if finishing is not None:
                done = finishing()
        if not done.recorded:
            log.info(
                "tick %s: batch %d ran after its tick ended; nothing of it is written",
                spec.tick_id,
                spec.idx,
            )
        return self._close(spec.tick_id) if done.closes else None

    def _rows(self, held: Conn, host_ids: list[str]) -> list[HostRow]:
        """The whole rows of the hosts a batch evaluates again, on the batch's connection."""
        with self.db.pipeline(held) as conn:
            read = self.repos.hosts.batch_rows(conn, host_ids)
        return read()

    def _window(self, tick_id: str) -> BatchWindow:
        # Settled means settled until the evaluation's time, after the pull: a margin of one
        # interval, so that a hold or report ending during the pull is evaluated anew.
        return BatchWindow(
            now=self.clock(),
            pushed_within_s=self.cfg.tick_interval_s,
            max_clock_skew_s=self.cfg.max_clock_skew_s,
            max_report_age_s=self.cfg.report_max_age_s,
            margin_s=self.cfg.tick_interval_s,
            tick_id=tick_id,
        )

    def _cached(self, tick_id: str) -> tuple[Context, str | None] | None:
        cached = self._tick_context
        return cached[1] if cached is not None and cached[0] == tick_id else None

    def _context(self, tick_id: str, start: BatchStart, held: Conn) -> tuple[Context, str | None]:
        """The tick's context: as this process has it, as the coordinator kept it, or read now."""
        found = self._cached(tick_id)
        if found is None:
            if start.context is not None:
                found = Context.from_json(start.context), start.context_key
            else:  # kept by no coordinator (one of an older version): evaluate every host
                with self.db.pipeline(held) as conn:
                    found = load_context(conn, self.repos, self.clock()), None
            self._tick_context = (tick_id, found)
        return found

    def _keep_context(self, tick_id: str) -> None:
        """Read the tick's context once, for every batch of the tick, in whatever process."""
        with self.db.transaction() as conn:
            context = load_context(conn, self.repos, self.clock())
            key = context.key
            self.repos.ticks.keep_context(conn, tick_id, context.as_json(), key)
        self._tick_context = (tick_id, (context, key))

    def _close(self, tick_id: str) -> TickResult:
        started = time.perf_counter()
        statements_before = STATEMENTS.count
        with self.db.transaction() as conn:
            tick = self.repos.ticks.get(conn, tick_id)
            batches = self.repos.ticks.batch_results(conn, tick_id)
        noted = dict((tick or {}).get("summary") or {})
        result = TickResult(tick_id=tick_id, took_over=noted.get("took_over"))
        for name in COORDINATOR_COUNTS:
            setattr(result, name, int(noted.get(name, 0)))
        result = self.closer.close(result, batches)
        result.statements += STATEMENTS.count - statements_before + 1
        with self.db.transaction() as conn:
            duration_s = self.repos.ticks.close(conn, tick_id, result.as_dict())
        result.duration_s = duration_s if duration_s is not None else time.perf_counter() - started
        log.info("tick: %s", result.as_dict())
        return result
