"""Safety under storms and flapping: caps, backoff, quarantine, pauses and the observer gate.

All pure: the tick and the plan feed them what they loaded, and time and randomness come in as
arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from models.clock import stamp
from models.domain import Host, HostStatus

FLEET = "fleet"

#: How many silent hosts the observer gate's reason names (the count says the rest).
SILENT_EXAMPLES = 5

#: Hosts the observer gate does not count: an admin's maintenance, and a host never heard from.
UNOBSERVED_STATUSES = frozenset({HostStatus.MAINTENANCE, HostStatus.UNASSIGNED})


@dataclass(frozen=True, slots=True)
class Pause:
    """Automatic activation stopped, fleet-wide (scope ``fleet``) or for one cluster."""

    scope: str
    reason: str
    owner: str
    created_at: datetime
    expires_at: datetime | None = None

    def is_active(self, now: datetime) -> bool:
        """True until the pause expires (a pause with no expiry lasts until lifted)."""
        return self.expires_at is None or now < self.expires_at

    def describe(self) -> str:
        """Say who paused, why and until when."""
        until = f" until {stamp(self.expires_at)}" if self.expires_at else ""
        where = "fleet-wide" if self.scope == FLEET else f"cluster {self.scope}"
        return f"paused {where} by {self.owner}{until}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Gates:
    """What stops automatic activation beyond a host's own state: pauses and the observer."""

    pauses: Mapping[str, Pause] = field(default_factory=dict)
    observer_block: str | None = None
    #: Storage domains out of service (not in maintenance): their hosts wait for them first.
    inactive_domains: frozenset[str] = frozenset()

    def pause_for(self, cluster_id: str, now: datetime) -> Pause | None:
        """The active pause that covers a cluster: the fleet's first, then the cluster's."""
        for scope in (FLEET, cluster_id):
            pause = self.pauses.get(scope)
            if pause is not None and pause.is_active(now):
                return pause
        return None


NO_GATES = Gates()


@dataclass(frozen=True, slots=True)
class CapPolicy:
    """Limits on activations in flight: per cluster (a number or a share) and across the fleet.

    ``queue_room`` bounds the activations queued and not started yet (their messages wait in
    the broker): a tick admits no more than the activation pool can start before a message
    expires and is re-sent, so a deep queue is never re-sent, abandoned and created again.
    """

    cluster_max: int | None = None
    cluster_share: float | None = 0.25
    fleet_max: int = 50
    queue_room: int | None = None

    def cluster_limit(self, cluster_size: int) -> int:
        """The cluster's cap: the number, else the share of its hosts; always at least one."""
        if self.cluster_max is not None:
            return max(1, self.cluster_max)
        share = self.cluster_share if self.cluster_share is not None else 1.0
        return max(1, int(cluster_size * share))


@dataclass(frozen=True, slots=True)
class Candidate:
    """A host the policy would activate, waiting for a slot since ``waiting_since``."""

    host_id: str
    cluster_id: str
    waiting_since: datetime


@dataclass(frozen=True, slots=True)
class Admission:
    """Which candidates get a slot now and which wait, with the reason for each that waits."""

    admitted: tuple[Candidate, ...]
    capped: tuple[tuple[Candidate, str], ...]


def admit(
    candidates: Iterable[Candidate],
    in_flight: Mapping[str, int],
    cluster_sizes: Mapping[str, int],
    caps: CapPolicy,
    queued: int = 0,
) -> Admission:
    """Give slots oldest first without any cluster, the fleet or the queue going over its cap.

    Args:
        candidates: hosts that may be activated now.
        in_flight: activations already queued or running, by cluster id.
        cluster_sizes: hosts per cluster, for share caps.
        caps: the limits.
        queued: activations queued and not started yet (for ``caps.queue_room``).
    """
    counts = dict(in_flight)
    fleet = sum(counts.values())
    room = caps.queue_room
    admitted: list[Candidate] = []
    capped: list[tuple[Candidate, str]] = []
    for cand in sorted(candidates, key=lambda c: (c.waiting_since, c.host_id)):
        limit = caps.cluster_limit(cluster_sizes.get(cand.cluster_id, 1))
        used = counts.get(cand.cluster_id, 0)
        if fleet >= caps.fleet_max:
            capped.append((cand, f"fleet cap reached: {fleet}/{caps.fleet_max} activations in flight"))
        elif room is not None and queued >= room:
            capped.append((cand, f"activation queue full: {queued}/{room} activations not started yet"))
        elif used >= limit:
            capped.append((cand, f"cluster {cand.cluster_id} cap reached: {used}/{limit} in flight"))
        else:
            admitted.append(cand)
            counts[cand.cluster_id] = used + 1
            fleet += 1
            queued += 1
    return Admission(tuple(admitted), tuple(capped))


def backoff_delay_s(failures: int, base_s: float, max_s: float, jitter: float) -> float:
    """Seconds to wait after ``failures`` failed automatic activations in a row.

    Exponential from ``base_s`` (one tick) up to ``max_s``, with equal jitter: the delay lies in
    [d/2, d] for d = min(max_s, base_s * 2**(failures - 1)), so the lower bound never shrinks.

    Args:
        jitter: a number in [0, 1], drawn by the caller.
    """
    if failures <= 0:
        return 0.0
    exponent = min(failures - 1, 62)
    ceiling = min(max_s, base_s * (2.0**exponent))
    return ceiling / 2.0 + ceiling / 2.0 * min(max(jitter, 0.0), 1.0)


def is_flapping(recent_ends: int, limit: int) -> bool:
    """True when a host's automatic recoveries and failures in the window reach ``limit``."""
    return recent_ends >= limit


#: A host's own holds, in the order they are shown: what keeps it from automatic activation
#: whatever its status (an up host can carry a quarantine that stops its next recovery).
HOST_HOLDS = (
    "agent_fence_ahead",
    "agent_state_unwritable",
    "maintenance",
    "autorecovery_off",
    "quarantine",
    "error_period",
    "backoff",
    "init_outcome_unknown",
)


def host_holds(host: Host, now: datetime, state_unwritable: str | None = None) -> tuple[str, ...]:
    """Return the holds ``host`` carries at ``now`` (``HOST_HOLDS`` names), whatever its status.

    ``state_unwritable`` is its latest report's: an agent that cannot save its fence refuses
    every init, so the host is held until a report says it can again. Pauses and the observer
    gate hold whole clusters or the fleet: they are not a host's own.
    """
    carried = {
        "maintenance": host.status is HostStatus.MAINTENANCE,
        "autorecovery_off": not host.autorecovery,
        "quarantine": host.quarantined_at is not None,
        "error_period": host.status is HostStatus.ERROR
        and (host.error_until is None or now < host.error_until),
        "backoff": host.next_attempt_at is not None and now < host.next_attempt_at,
        "init_outcome_unknown": host.init_hold_until is not None and now < host.init_hold_until,
        "agent_fence_ahead": host.agent_hold is not None,
        "agent_state_unwritable": state_unwritable is not None,
    }
    return tuple(kind for kind in HOST_HOLDS if carried[kind])


def is_observed(status: HostStatus) -> bool:
    """True for a host the observer gate counts: heard from at least once, not in maintenance.

    A registered host that never reported (``unassigned``: an inventory imported before its
    agents run) says nothing about the collector, so it must not close the gate for the fleet.
    """
    return status not in UNOBSERVED_STATUSES


def silent_examples(*groups: Iterable[str]) -> list[str]:
    """Return the first ``SILENT_EXAMPLES`` host ids, sorted, of the given groups together."""
    return sorted({host_id for group in groups for host_id in group})[:SILENT_EXAMPLES]


def observer_block(
    *,
    silent: int,
    observed: int,
    max_silent_share: float,
    quiet: bool,
    redis_ok: bool,
    silent_ids: Sequence[str] = (),
) -> str | None:
    """Say why automatic activation must wait for the whole fleet, or None.

    Args:
        silent: hosts whose latest data is missing, stale, unusable or unanswered.
        observed: hosts monitored (``is_observed``: maintenance and unassigned excluded).
        max_silent_share: above this share of silent hosts the observer is suspect.
        quiet: no full tick of fresh data yet since the service started or after a gap.
        redis_ok: whether the lock service answers.
        silent_ids: a few of the silent hosts, named in the reason.
    """
    if not redis_ok:
        return "redis_unavailable: the lock service does not answer"
    if quiet:
        return "quiet_period: waiting for a full tick of fresh data after a start or a gap"
    if observed and silent / observed > max_silent_share:
        return (
            f"monitoring_stale: {silent} of {observed} hosts have no fresh data "
            f"(limit {max_silent_share:.0%}){_naming(silent, silent_ids)}; "
            "the collector or the network may be broken"
        )
    return None


def _naming(silent: int, silent_ids: Sequence[str]) -> str:
    named = list(silent_ids[:SILENT_EXAMPLES])
    if not named:
        return ""
    more = silent - len(named)
    return ": " + ", ".join(named) + (f" and {more} more" if more > 0 else "")

