"""The one assessment: (report, cluster requirements, now) -> problems.

The same function decides whether a host goes non_operational and whether it may come back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from models.domain import REPAIRABLE_REASONS, SILENT_REASONS, Cluster, Reason, Report
from models.report import is_bad_report

_VERSION_PART = re.compile(r"\D*(\d+)(.*)")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that keeps a host out of service."""

    reason: Reason
    detail: str
    subject: str | None = None
    #: The host's agent says its own init repairs it (a stopped pool or network, backing present).
    repairable: bool = False


@dataclass(frozen=True, slots=True)
class Assessment:
    """The problems found in a host's latest report; recoverable when none, or init repairs each."""

    problems: tuple[Problem, ...]
    report_age_s: float | None
    #: Why the host's agent cannot save its state (the fence), from a fresh report: no init
    #: would be accepted, and none is sent automatically (``Skip.AGENT_STATE_UNWRITABLE``).
    agent_state_unwritable: str | None = None

    @property
    def is_healthy(self) -> bool:
        """True when nothing keeps the host out of service."""
        return not self.problems

    @property
    def is_repairable(self) -> bool:
        """True when there are problems and an init repairs every one of them.

        Only a storage domain or a network can be: whatever an agent says, kvm, version, CPU
        flags and a host that cannot be heard are never repaired by an init.
        """
        return bool(self.problems) and all(
            p.repairable and p.reason in REPAIRABLE_REASONS for p in self.problems
        )

    @property
    def is_recoverable(self) -> bool:
        """True when an init may bring the host back: nothing wrong, or only what init repairs."""
        return self.is_healthy or self.is_repairable

    @property
    def is_silent(self) -> bool:
        """True when the host cannot be heard (no, stale, bad or unanswered report)."""
        return bool(self.problems) and self.problems[0].reason in SILENT_REASONS

    @property
    def primary(self) -> Problem | None:
        """The problem that names the host's reason, the first found."""
        return self.problems[0] if self.problems else None


def version_tuple(version: str) -> tuple[int, ...]:
    """Turn a dotted version into a comparable tuple.

    Each part counts by its number; a suffix (``2-1``, ``5rc1``) or a part with no number ends
    the version there, so ``4.5.2-1`` is ``(4, 5, 2)`` and ``4.5rc1`` is ``(4, 5)``.
    """
    parts: list[int] = []
    for piece in version.strip().split("."):
        match = _VERSION_PART.match(piece)
        if match is None:
            break
        parts.append(int(match.group(1)))
        if match.group(2):
            break
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def assess(
    report: Report | None, cluster: Cluster, now: datetime, max_report_age_s: float
) -> Assessment:
    """List what keeps a host out of service, given its latest report and its cluster.

    A missing, unanswered or stale report is itself a problem: it never justifies an activation.
    """
    if report is None:
        return Assessment((Problem(Reason.NO_REPORT, "no monitoring report yet"),), None)
    age_s = (now - report.reported_at).total_seconds()
    if is_bad_report(report):
        return Assessment((Problem(Reason.BAD_REPORT, report.error or "bad report"),), age_s)
    if not report.agent_reachable:
        detail = report.error or "agent did not answer"
        return Assessment((Problem(Reason.AGENT_UNREACHABLE, detail),), age_s)
    if age_s > max_report_age_s:
        detail = f"latest report is {age_s:.0f}s old (limit {max_report_age_s:.0f}s)"
        return Assessment((Problem(Reason.STALE_REPORT, detail),), age_s)
    if age_s < -max_report_age_s:
        detail = f"report is dated {-age_s:.0f}s in the future; check the host's clock"
        return Assessment((Problem(Reason.STALE_REPORT, detail),), age_s)

    problems: list[Problem] = []
    repairable = report.repairable  # storage domains and networks only (``REPAIRABLE_REASONS``)
    if not report.kvm:
        problems.append(Problem(Reason.KVM_NOT_RUNNING, _told(report, "kvm", "kvm is not running")))
    for sd in sorted(cluster.storage_domains):
        state = report.storage_domains.get(sd)
        if state is not True:
            seen = "not reported" if state is None else "unreachable"
            key = f"storage_domain:{sd}"
            detail = _told(report, key, f"storage domain {sd} {seen}")
            fixable = state is False and key in repairable
            problems.append(Problem(Reason.STORAGE_DOMAIN_UNREACHABLE, detail, sd, fixable))
    for net in sorted(cluster.required_networks):
        state = report.networks.get(net)
        if state is None:
            problems.append(Problem(Reason.NETWORK_UNREACHABLE, f"network {net} not configured", net))
        elif not state:
            key = f"network:{net}"
            detail = _told(report, key, f"network {net} link down")
            problems.append(Problem(Reason.NETWORK_INTERFACE_DOWN, detail, net, key in repairable))
    if version_tuple(report.version) < version_tuple(cluster.min_version):
        problems.append(
            Problem(
                Reason.VERSION_INCOMPATIBLE,
                f"version {report.version} below cluster minimum {cluster.min_version}",
            )
        )
    missing = cluster.cpu_flags - report.cpu_flags
    if missing:
        problems.append(
            Problem(Reason.CPU_INCOMPATIBLE, "missing cpu flags: " + ", ".join(sorted(missing)))
        )
    return Assessment(tuple(problems), age_s, report.state_unwritable)


def _told(report: Report, key: str, ours: str) -> str:
    """Our words for a problem, then what the agent said of that object, when it said anything."""
    theirs = report.details.get(key)
    return f"{ours}: {theirs}" if theirs else ours
