"""Domain types: clusters, hosts, statuses, reasons and monitoring reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum


class HostStatus(StrEnum):
    """Where a host stands in the fleet."""

    #: Registered, never reported (oVirt's word): not a dead agent, a host not heard from yet.
    UNASSIGNED = "unassigned"
    UP = "up"
    INITIALIZING = "initializing"
    NON_OPERATIONAL = "non_operational"
    NON_RESPONSIVE = "non_responsive"
    ERROR = "error"
    MAINTENANCE = "maintenance"


class Reason(StrEnum):
    """Why a host is out of service (after oVirt's NonOperationalReason)."""

    STORAGE_DOMAIN_UNREACHABLE = "storage_domain_unreachable"
    NETWORK_UNREACHABLE = "network_unreachable"
    NETWORK_INTERFACE_DOWN = "network_interface_down"
    KVM_NOT_RUNNING = "kvm_not_running"
    CPU_INCOMPATIBLE = "cpu_incompatible"
    VERSION_INCOMPATIBLE = "version_incompatible"
    TIMEOUT_RECOVERING_FROM_CRASH = "timeout_recovering_from_crash"
    ACTIVATION_FAILED = "activation_failed"
    AGENT_UNREACHABLE = "agent_unreachable"
    STALE_REPORT = "stale_report"
    NO_REPORT = "no_report"
    BAD_REPORT = "bad_report"
    GENERAL = "general"


#: Reasons that mean "we cannot hear the host", which put it in non_responsive.
SILENT_REASONS = frozenset(
    {Reason.AGENT_UNREACHABLE, Reason.STALE_REPORT, Reason.NO_REPORT, Reason.BAD_REPORT}
)


#: Reasons an init can repair (it starts pools and networks), when the agent says it will.
REPAIRABLE_REASONS = frozenset(
    {Reason.STORAGE_DOMAIN_UNREACHABLE, Reason.NETWORK_UNREACHABLE, Reason.NETWORK_INTERFACE_DOWN}
)


class Trigger(StrEnum):
    """Who asked for an activation."""

    AUTO = "auto"
    MANUAL = "manual"


class ActivationState(StrEnum):
    """Life of one activation record."""

    QUEUED = "queued"
    #: The fence is issued and the init is being sent, under the object's lock.
    SENDING = "sending"
    #: The agent has the init (or may have it: its answer was not seen); the record holds the
    #: object until the outcome is known or its deadline passes.
    SENT = "sent"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    ABANDONED = "abandoned"


IN_FLIGHT_STATES = (ActivationState.QUEUED, ActivationState.SENDING, ActivationState.SENT)


class DomainStatus(StrEnum):
    """Where a storage domain stands."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    MAINTENANCE = "maintenance"


@dataclass(frozen=True, slots=True)
class StorageDomain:
    """A storage domain attached to one or more clusters."""

    id: str
    status: DomainStatus = DomainStatus.ACTIVE
    autorecovery: bool = True
    fence: int = 0
    last_seen_at: datetime | None = None
    status_changed_at: datetime | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Cluster:
    """A group of hosts with shared requirements."""

    id: str
    required_networks: frozenset[str] = frozenset()
    storage_domains: frozenset[str] = frozenset()
    min_version: str = "0"
    cpu_flags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Host:
    """A hypervisor host as the store knows it."""

    id: str
    cluster_id: str
    agent_url: str
    status: HostStatus
    reason: str | None = None
    detail: str | None = None
    autorecovery: bool = True
    status_changed_at: datetime | None = None
    fence: int = 0
    in_flight: bool = False
    failures: int = 0
    next_attempt_at: datetime | None = None
    quarantined_at: datetime | None = None
    error_until: datetime | None = None
    #: No new init before this time: an earlier init's outcome was not seen (v1 agent).
    init_hold_until: datetime | None = None
    #: Registered with ``adopt``: its first clean report marks it up without an init.
    adopt: bool = False
    #: Held for a security event (``agent_fence_ahead``) until an admin clears it.
    agent_hold: str | None = None
    #: The agent state (``agent.state_id``) that last learnt the product's fence.
    agent_state_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunningInit:
    """An init that a host's agent says is running on it (protocol v2 report field ``init``)."""

    activation_id: str
    fence: int
    started_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AgentState:
    """The agent's own state as its report says (v2 field ``agent``): which state, what fence."""

    state_id: str
    highest_fence: int


@dataclass(frozen=True, slots=True)
class Report:
    """What a host's agent said about itself at one moment.

    ``agent_reachable`` is false when the collector could not get a report; the other fields are
    then empty and ``error`` says why.
    """

    host_id: str
    reported_at: datetime
    agent_reachable: bool = True
    kvm: bool = False
    version: str = ""
    cpu_flags: frozenset[str] = frozenset()
    networks: Mapping[str, bool] = field(default_factory=dict)
    storage_domains: Mapping[str, bool] = field(default_factory=dict)
    vms_running: int = 0
    mem_free_mb: int = 0
    error: str | None = None
    source: str = "pull"
    #: Agent protocol version the report says it speaks (v1 reports have no ``protocol`` field).
    protocol: int = 1
    #: The init running on the host, as the agent reports it (v2), else None.
    init: RunningInit | None = None
    #: What the agent says is wrong, per object (``kvm``, ``storage_domain:<id>``,
    #: ``network:<name>``): shown after the product's own words in a problem's detail.
    details: Mapping[str, str] = field(default_factory=dict)
    #: The agent's state (``state_id``, ``highest_fence``), when the agent reports it.
    agent: AgentState | None = None
    #: Objects the agent says are down only in a way its own init repairs (a pool or network
    #: defined but stopped while what backs it is there): keys as in ``details``.
    repairable: frozenset[str] = frozenset()
    #: Why the agent cannot save its state (its fence) now, when it says so (v2
    #: ``state_unwritable``); it refuses every init meanwhile.
    state_unwritable: str | None = None


def domains_by_status(domains: Mapping[str, StorageDomain], status: DomainStatus) -> frozenset[str]:
    """The ids of the storage domains in ``status``."""
    return frozenset(sd.id for sd in domains.values() if sd.status is status)


def effective_cluster(cluster: Cluster, maintenance: frozenset[str]) -> Cluster:
    """The cluster's requirements with domains in maintenance left out (hosts need not reach them)."""
    if not cluster.storage_domains & maintenance:
        return cluster
    return replace(cluster, storage_domains=cluster.storage_domains - maintenance)
