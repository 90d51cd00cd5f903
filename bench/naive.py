"""The naive baseline: one Celery task per host per tick (what a straightforward port would do).

Run by the benchmark as ``celery -A bench.naive worker``. Each task loads its host, pulls its
report, stores it, decides and records with the same repository functions and policy as the
real tick, one host at a time.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.signals import worker_process_init

from autorecovery.adapters import keys
from autorecovery.adapters.agents import Target
from autorecovery.adapters.store import activations, hosts
from autorecovery.adapters.store.db import STATEMENTS
from models.policy import RECOVERABLE_STATUSES, evaluate
from workers import container, enqueue_activation, settings

NAIVE_TASK = "bench.naive_check_host"
DONE_KEY = keys.PREFIX + "bench:naive:done"
STATEMENTS_KEY = keys.PREFIX + "bench:naive:statements"
ANSWERED_KEY = keys.PREFIX + "bench:naive:answered"

app = Celery("bench-naive", broker=settings.effective_broker_url)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    worker_prefetch_multiplier=4,
    task_default_queue="bench-naive",
)


@worker_process_init.connect
def _init(**_: Any) -> None:
    container()


@app.task(name=NAIVE_TASK)
def naive_check_host(host_id: str) -> None:
    """Check one host: a broker message, a pull and a few statements for every host."""
    deps = container()
    before = STATEMENTS.count
    now = datetime.now(UTC)
    with deps.db.transaction() as conn:
        loaded = hosts.get_host(conn, host_id)
        assert loaded is not None
        host, _, _ = loaded
        cluster = hosts.get_cluster(conn, host.cluster_id)
    assert cluster is not None
    report = deps.agents.get_report(Target(host.id, host.agent_url), now)
    ev = evaluate(host, report, cluster, now, deps.settings.report_max_age_s)
    with deps.db.transaction() as conn:
        hosts.upsert_reports(conn, [report], now)
        if ev.transition is not None:
            hosts.apply_transitions(conn, [ev.transition], now, "auto")
        hosts.record_decisions(conn, [ev.decision], now)
        created = []
        if ev.decision.is_activate:
            created = activations.create_many(
                conn,
                [(str(uuid.uuid4()), host.id)],
                trigger="auto",
                actor="auto",
                now=now,
                statuses=[s.value for s in RECOVERABLE_STATUSES],
                reason="naive",
            )
    for activation_id, hid in created:
        enqueue_activation(activation_id, hid, "auto", "auto")
    with deps.redis.pipeline() as pipe:
        pipe.incr(DONE_KEY)
        pipe.incrby(STATEMENTS_KEY, STATEMENTS.count - before)
        pipe.incrby(ANSWERED_KEY, int(report.agent_reachable))
        pipe.execute()
