"""What ``autorecovery up`` shows: the live view while it runs, the summary and verdict at the end."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table

from autorecovery.adapters.store import Database
from autorecovery.adapters.store.db import run
from autorecovery.services.views import FleetViews
from harness.sim import SimulatorClient
from harness.up.chaos import Chaos
from models.policy import ACTIVATE, Skip

#: Decisions that hold a host that could come back: safety at work, not a failure to recover.
HELD_BY_SAFETY = frozenset(
    {Skip.QUARANTINED, Skip.BACKOFF, Skip.PAUSED, Skip.ERROR_PERIOD, Skip.OBSERVER_UNHEALTHY, Skip.CAPPED}
)
#: Decisions of a host that is recoverable: the product should bring it back.
RECOVERABLE = frozenset({ACTIVATE, Skip.ACTIVATION_IN_FLIGHT, Skip.LOCK_BUSY})


def classify(plan: Iterable[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Sort the hosts that are not up by what keeps them down, from the product's own plan.

    Returns:
        ``held_by_safety`` (quarantine, backoff, a pause, the error period, the observer's gate,
        a cap), ``left_behind`` (recoverable and not recovered) and ``down_with_a_reason`` (the
        host has a problem, is silent, in maintenance, or its autorecovery is off), each by host
        id with the decision code and detail.
    """
    out: dict[str, dict[str, str]] = {"held_by_safety": {}, "left_behind": {}, "down_with_a_reason": {}}
    for entry in plan:
        if entry["status"] == "up":
            continue
        why = f"{entry['code']}: {entry['detail']}"
        if entry["code"] in HELD_BY_SAFETY:
            out["held_by_safety"][entry["host_id"]] = why
        elif entry["code"] in RECOVERABLE:
            out["left_behind"][entry["host_id"]] = why
        else:
            out["down_with_a_reason"][entry["host_id"]] = why
    return out


def summarise(
    db: Database, views: FleetViews, sim: SimulatorClient, chaos: Chaos | None, started: datetime
) -> dict[str, Any]:
    """Count what happened since ``started`` and say why each host that is not up is down."""
    with db.transaction() as conn:
        acts = run(
            conn, "SELECT id, trigger, state FROM activations WHERE queued_at >= %(t)s", {"t": started}
        ).fetchall()
    auto_ids = {a["id"] for a in acts if a["trigger"] == "auto"}
    faulted_auto = [c for c in sim.inits() if c.get("faulted") and c["activation_id"] in auto_ids]
    return {
        "faults_injected": chaos.injected if chaos else 0,
        "recoveries": sum(1 for a in acts if a["state"] == "done"),
        "activations": len(acts),
        "auto_inits_on_hosts_with_a_problem": len(faulted_auto),
        "overlapping_inits": sim.overlaps()["count"],
        "hosts_by_status": views.counts()["hosts_by_status"],
        **classify(views.plan()),
    }


def verdict(summary: dict[str, Any], *, settled: bool) -> list[str]:
    """Name every bar the run broke (an empty list: none).

    Safety bars hold whatever happened; "left behind" counts only once the fleet had the time to
    come back (``settled``): Ctrl-C interrupts recoveries, and a host held by safety is not left.
    """
    broken = []
    if summary["overlapping_inits"]:
        broken.append(f"{summary['overlapping_inits']} overlapping init(s) on one host")
    if summary["auto_inits_on_hosts_with_a_problem"]:
        broken.append(
            f"{summary['auto_inits_on_hosts_with_a_problem']} automatic init(s) of a host with a problem"
        )
    if settled and summary["left_behind"]:
        broken.append(f"host(s) left behind: {', '.join(sorted(summary['left_behind']))}")
    return broken


def live_view(db: Database, chaos: Chaos | None, started: datetime) -> Group:
    """The hosts by status, those not up and why, the latest activations, the chaos' doings."""
    with db.transaction() as conn:
        counts = run(
            conn, "SELECT status, count(*) AS n FROM hosts GROUP BY status ORDER BY status"
        ).fetchall()
        down = run(
            conn,
            "SELECT id, status, reason, last_decision FROM hosts WHERE status <> 'up' ORDER BY id LIMIT 12",
        ).fetchall()
        recent = run(
            conn,
            """SELECT host_id, trigger, outcome, reason, ended_at FROM activations
               WHERE ended_at IS NOT NULL ORDER BY ended_at DESC LIMIT 6""",
        ).fetchall()
    parts: list[Any] = [
        _table("hosts by status", ("status", "hosts"), [(r["status"], str(r["n"])) for r in counts]),
        _table(
            "not up (why)",
            ("host", "status", "reason", "decision"),
            [(r["id"], r["status"], r["reason"] or "", r["last_decision"] or "") for r in down],
        ),
        _table(
            "recent activations",
            ("host", "trigger", "outcome", "reason", "ended"),
            [
                (
                    r["host_id"],
                    r["trigger"],
                    r["outcome"] or "",
                    r["reason"] or "",
                    f"{r['ended_at']:%H:%M:%S}",
                )
                for r in recent
            ],
        ),
    ]
    if chaos is not None:
        parts.append("chaos: " + (" | ".join(chaos.events[-3:]) or "waiting"))
    elapsed = (datetime.now(UTC) - started).total_seconds()
    parts.append(f"running {elapsed:.0f}s; Ctrl-C stops everything")
    return Group(*parts)


def _table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(title=title, show_edge=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table
