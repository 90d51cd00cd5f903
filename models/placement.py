"""VM placement feedback: who is charged for a failed launch, and how hosts rank for the next one.

A host is charged when a VM failed on it and then started on another host: something is wrong
with the host that monitoring may not see. Charges decay after a window; enough of them put the
host in ``error`` for a while. The ranking penalises recent charges, so the least loaded host is
not the first choice just because it keeps failing its VMs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.domain import Host, HostStatus, Report


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try to start a VM on a host."""

    host_id: str
    ok: bool
    error: str | None = None


def charged_hosts(attempts: Sequence[Attempt]) -> list[Attempt]:
    """Return the failed attempts whose host is charged: the VM then started on another host.

    Failures after which the VM never started anywhere charge nobody (the VM may be at fault),
    nor does a failure on the host where the VM finally started.
    """
    started_on = next((a.host_id for a in reversed(attempts) if a.ok), None)
    if started_on is None:
        return []
    last_ok = max(i for i, a in enumerate(attempts) if a.ok)
    seen: set[str] = set()
    charged = []
    for attempt in attempts[:last_ok]:
        if not attempt.ok and attempt.host_id != started_on and attempt.host_id not in seen:
            seen.add(attempt.host_id)
            charged.append(attempt)
    return charged


def should_enter_error(recent_charges: int, limit: int) -> bool:
    """True when a host's charges within the window reach the limit."""
    return recent_charges >= limit


def error_until(now: datetime, period_s: float) -> datetime:
    """When a host put in error now may be considered again."""
    return now + timedelta(seconds=period_s)


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each thing counts in a host's placement score (higher score is better)."""

    per_free_gb: float = 1.0
    per_vm: float = 1.0
    per_charge: float = 20.0


@dataclass(frozen=True, slots=True)
class Placement:
    """One up host's score and the terms it is made of."""

    host_id: str
    score: float
    terms: Mapping[str, float]
    vms_running: int
    mem_free_mb: int
    recent_charges: int

    def as_dict(self) -> dict[str, object]:
        """Present the placement as JSON."""
        return {"host_id": self.host_id, "score": round(self.score, 3),
                "terms": {k: round(v, 3) for k, v in self.terms.items()},
                "vms_running": self.vms_running, "mem_free_mb": self.mem_free_mb,
                "recent_charges": self.recent_charges}


def rank(
    hosts: Sequence[tuple[Host, Report | None]],
    recent_charges: Mapping[str, int],
    weights: Weights = Weights(),  # noqa: B008 - frozen
) -> list[Placement]:
    """Rank up hosts with a usable report best first; every other host is left out."""
    out = []
    for host, report in hosts:
        if host.status is not HostStatus.UP or report is None or not report.agent_reachable:
            continue
        charges = recent_charges.get(host.id, 0)
        terms = {
            "free_memory": weights.per_free_gb * report.mem_free_mb / 1024.0,
            "vms_running": -weights.per_vm * report.vms_running,
            "recent_charges": -weights.per_charge * charges,
        }
        out.append(Placement(host.id, sum(terms.values()), terms, report.vms_running,
                             report.mem_free_mb, charges))
    return sorted(out, key=lambda p: (-p.score, p.host_id))
