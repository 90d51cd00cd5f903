"""The demo's verdict: which safety rules a run broke, judged on what the product could know.

The simulator marks an init ``faulted`` when the host had a problem at the instant the init
arrived. The chaos injects faults at random instants, so a fault may land between the worker's
last read of the host's report and its init (a few milliseconds): the product could not have
seen it. What it could know is the report it checked: an automatic init is a broken rule only
when that report showed a problem (or when there is no record of the check at all).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

#: Host ids named per group of the end-of-run summary; the count says the rest.
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class Check:
    """What the worker read before an automatic init: when it checked, and the report's date."""

    checked_at: datetime
    report_at: datetime

    @classmethod
    def from_audit(cls, details: Mapping[str, Any]) -> Check:
        """Read the check from the details of the audit entry that set the host initializing."""
        checked_at, report_at = (datetime.fromisoformat(details[k]) for k in ("checked_at", "report_at"))
        return cls(checked_at, report_at)


@dataclass
class InitJudgement:
    """Automatic inits that reached a host with a problem, split by what the product knew."""

    #: The report the worker checked showed the problem (or the check is not on record).
    broken: list[str] = field(default_factory=list)
    #: The checked report was clean: the fault came after the check, before the init.
    raced: list[str] = field(default_factory=list)


def clock(moment: datetime) -> str:
    """A time of day with milliseconds, in UTC (``12:00:01.123Z``)."""
    return moment.strftime("%H:%M:%S.%f")[:-3] + "Z"


def judge_inits(inits: Iterable[Mapping[str, Any]], checks: Mapping[str, Check]) -> InitJudgement:
    """Judge the simulator's faulted init records of automatic activations.

    Args:
        inits: the simulator's init records (``host_id``, ``activation_id``, ``started_at``,
            ``faulted``, ``reports_before``: the host's last reports served before the init).
        checks: by activation id, what its worker read before the init (from the audit log).
    """
    judged = InitJudgement()
    for call in inits:
        if not call.get("faulted"):
            continue
        host, activation = call["host_id"], call["activation_id"]
        init_at = datetime.fromisoformat(call["started_at"])
        who = f"host {host}, activation {activation}"
        check = checks.get(activation)
        if check is None:
            judged.broken.append(f"{who}: init at {clock(init_at)}, no record of the report it checked")
            continue
        served = {datetime.fromisoformat(r["at"]): r["problem"] for r in call.get("reports_before", [])}
        when = (
            f"checked at {clock(check.checked_at)} (report of {clock(check.report_at)}), "
            f"init at {clock(init_at)}"
        )
        if check.report_at not in served:
            judged.broken.append(f"{who}: {when}; the simulator has no record of that report")
        elif served[check.report_at] is not None:
            judged.broken.append(f"{who}: the report showed {served[check.report_at]}; {when}")
        else:
            gap_ms = (init_at - check.checked_at).total_seconds() * 1000
            judged.raced.append(f"{who}: clean report, the fault came in the {gap_ms:.0f} ms after; {when}")
    return judged


def group_down(hosts: Mapping[str, str]) -> list[str]:
    """Summarise hosts by the code of what keeps them down: count, a few ids, the first detail.

    Args:
        hosts: host id -> ``"code: detail"`` (as ``classify`` gives them).
    """
    by_code: dict[str, list[tuple[str, str]]] = {}
    for host_id in sorted(hosts):
        code, _, detail = hosts[host_id].partition(": ")
        by_code.setdefault(code, []).append((host_id, detail))
    lines = []
    for code, members in sorted(by_code.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        ids = ", ".join(h for h, _ in members[:EXAMPLES])
        more = f" and {len(members) - EXAMPLES} more" if len(members) > EXAMPLES else ""
        lines.append(f"{code}: {len(members)} ({ids}{more}), e.g. {members[0][1]}")
    return lines


def verdict(summary: Mapping[str, Any], *, settled: bool) -> list[str]:
    """Name every safety rule the run broke (an empty list: none).

    Safety rules hold whatever happened; "left behind" counts only once the fleet had the time
    to come back (``settled``): Ctrl-C interrupts recoveries, and a host held by safety is not left.
    """
    broken = []
    if summary["overlapping_inits"]:
        broken.append(f"{summary['overlapping_inits']} overlapping init(s) on one host")
    for text in summary["auto_inits_on_a_report_with_a_problem"]:
        broken.append(f"automatic init of a host whose checked report showed a problem: {text}")
    if settled and summary["left_behind"]:
        broken.append(f"host(s) left behind: {', '.join(sorted(summary['left_behind']))}")
    return broken
