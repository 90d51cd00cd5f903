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
from harness.up.verdict import EXAMPLES, Check, group_down, judge_inits
from models.policy import ACTIVATE, REPAIR, Skip

#: Decisions that hold a host that could come back: safety at work, not a failure to recover.
HELD_BY_SAFETY = frozenset(
    {Skip.QUARANTINED, Skip.BACKOFF, Skip.PAUSED, Skip.ERROR_PERIOD, Skip.OBSERVER_UNHEALTHY, Skip.CAPPED}
)
#: Decisions of a host that is recoverable: the product should bring it back.
RECOVERABLE = frozenset({ACTIVATE, REPAIR, Skip.ACTIVATION_IN_FLIGHT, Skip.LOCK_BUSY})


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
    """Count what happened since ``started``, judge the automatic inits, say why hosts are down."""
    with db.transaction() as conn:
        acts = run(
            conn, "SELECT id, trigger, state FROM activations WHERE queued_at >= %(t)s", {"t": started}
        ).fetchall()
        checked = run(
            conn,
            """SELECT details FROM audit_log
               WHERE at >= %(t)s AND event = 'status_changed' AND details->>'to' = 'initializing'
                 AND details ? 'report_at'""",
            {"t": started},
        ).fetchall()
        repair_ids = {
            r["id"]
            for r in run(
                conn,
                """SELECT details->>'activation_id' AS id FROM audit_log
                   WHERE event = 'activation_queued' AND reason = 'repair' AND at >= %(t)s""",
                {"t": started},
            ).fetchall()
        }
    auto_ids = {a["id"] for a in acts if a["trigger"] == "auto"}
    checks = {str(r["details"]["activation_id"]): Check.from_audit(r["details"]) for r in checked}
    judged = judge_inits((c for c in sim.inits() if c["activation_id"] in auto_ids), checks)
    return {
        "faults_injected": chaos.injected if chaos else 0,
        "recoveries": sum(1 for a in acts if a["state"] == "done"),
        # Hosts brought back by an init that repaired them (a stopped pool or network).
        "repairs": sum(1 for a in acts if a["state"] == "done" and a["id"] in repair_ids),
        "activations": len(acts),
        "auto_inits_on_a_report_with_a_problem": judged.broken,
        "faults_between_check_and_init": judged.raced,
        "overlapping_inits": sim.overlaps()["count"],
        "hosts_by_status": views.counts()["hosts_by_status"],
        **classify(views.plan()),
    }


def _repairs(summary: dict[str, Any]) -> str:
    """`` (N repairs)`` when some recoveries repaired a stopped pool or network."""
    repairs = summary.get("repairs", 0)
    return f" ({repairs} by repair: a stopped pool or network started by init)" if repairs else ""


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The end-of-run summary in a few lines: counts, and the hosts down grouped by why."""
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary["hosts_by_status"].items()))
    lines = [
        f"faults injected {summary['faults_injected']}, activations {summary['activations']}, "
        f"recoveries {summary['recoveries']}{_repairs(summary)}, "
        f"overlapping inits {summary['overlapping_inits']}",
        f"hosts: {statuses}",
    ]
    cleared = summary.get("quarantines_cleared_by_the_demo_admin")
    if cleared:
        lines.append(f"quarantines cleared by the demo's admin: {cleared}")
    groups = (
        ("held by safety (by design, not a failure)", "held_by_safety"),
        ("down with a reason", "down_with_a_reason"),
        ("left behind (recoverable, not recovered)", "left_behind"),
    )
    for title, key in groups:
        if summary[key]:
            lines.append(f"{title}: {len(summary[key])} host(s)")
            lines += [f"  {line}" for line in group_down(summary[key])]
    raced = summary["faults_between_check_and_init"]
    if raced:
        lines.append(
            f"faults that came between the check of a clean report and the init (not a failure): {len(raced)}"
        )
        lines += [f"  {text}" for text in raced[:EXAMPLES]]
    return lines


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
