"""Response bodies, for the OpenAPI document and for checking what the routes return."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ClusterOut(BaseModel):
    """A cluster as stored."""

    id: str
    required_networks: list[str]
    storage_domains: list[str]
    min_version: str
    cpu_flags: list[str]


class Problem(BaseModel):
    """One thing that keeps a host out of service."""

    reason: str
    detail: str
    repairable: bool = Field(
        default=False, description="the host's agent says its own init repairs it (a stopped pool or network)"
    )


class Decision(BaseModel):
    """A decision code and the sentence that explains it."""

    code: str | None
    detail: str | None
    at: str | None = None


class HostFields(BaseModel):
    """What a host's list row and its detail both say first."""

    id: str
    cluster: str
    agent_url: str
    status: str
    reason: str | None
    detail: str | None
    autorecovery: bool
    status_changed_at: str | None
    report_age_s: float | None = Field(
        description="seconds since the agent last answered with a usable report (a failed pull "
        "does not count); null: never"
    )


class HostSummary(HostFields):
    """A host in a list."""

    in_flight: bool
    last_decision: str | None
    holds: list[str] = Field(
        description="the host's own holds now, whatever its status: maintenance, autorecovery_off, "
        "quarantine, error_period, backoff, init_outcome_unknown"
    )


class HostPage(BaseModel):
    """One page of hosts; pass ``next_after`` as ``after`` for the next."""

    hosts: list[HostSummary]
    next_after: str | None


class PauseOut(BaseModel):
    """Automatic activation stopped fleet-wide (scope ``fleet``) or for one cluster."""

    scope: str
    reason: str
    owner: str = Field(description="the token name that paused")
    created_at: str
    expires_at: str | None = Field(description="null: until an admin lifts it")


class PauseList(BaseModel):
    """The pauses in force."""

    pauses: list[PauseOut]


class Holds(BaseModel):
    """What holds a host back from automatic activation besides its own state."""

    failures: int = Field(description="failed automatic activations in a row")
    next_attempt_at: str | None = Field(description="backoff: no automatic attempt before this")
    quarantined_at: str | None
    quarantine_reason: str | None
    pause: PauseOut | None = Field(description="the pause that covers the host's cluster")
    observer_gate: str | None = Field(description="why the observer stops automatic activation")


class HoldInForce(BaseModel):
    """One thing holding the host out now."""

    hold: str = Field(
        description="agent_fence_ahead, agent_state_unwritable, maintenance, autorecovery_off, "
        "quarantine, error_period, backoff, init_outcome_unknown, pause or observer"
    )
    detail: str
    since: str | None
    until: str | None = Field(description="when it lifts by itself; null: until someone acts")


class HoldsCleared(BaseModel):
    """What an admin cleared on a host: the holds as they were just before."""

    host_id: str
    cleared: str = Field(description="quarantine_and_backoff or backoff")
    previous: dict[str, Any]


class Incident(BaseModel):
    """Many hosts of a cluster out for one storage domain or network."""

    id: int
    cluster: str
    reason: str
    subject: str
    hosts: int
    opened_at: str


class ClusterHealth(BaseModel):
    """A cluster's health in one line, as MachineHealthCheck says it: healthy N of M, limit K."""

    cluster: str
    hosts: int
    up: int = Field(description="hosts up now (healthy)")
    limit: int = Field(description="the most activations the tick runs at once in this cluster")
    in_flight: int = Field(description="activations queued or running now")


class HeldHosts(BaseModel):
    """The hosts that carry one kind of hold, whatever their status."""

    hold: str
    hosts: int
    by_status: dict[str, int]
    examples: list[str] = Field(description="a few of the hosts, by id")


class SafetyState(BaseModel):
    """What gates automatic activation now: the observer, pauses, caps in use, incidents."""

    clusters: list[ClusterHealth] = Field(default_factory=list, description="each cluster's health")
    gate: str | None = Field(description="why the observer stops automatic activation; null: it does not")
    last_full_tick_at: str | None
    silent_hosts: int
    observed_hosts: int
    pauses: list[PauseOut]
    in_flight: dict[str, int] = Field(description="activations queued or running, by cluster")
    incidents: list[Incident]
    holds: list[HeldHosts] = Field(description="hosts by the holds they carry, up hosts included")


class HostDetail(HostFields):
    """A host with its latest assessment, last decision, and why it is not back."""

    report: dict[str, Any] | None
    problems: list[Problem]
    last_decision: Decision
    why_not_recovered: Decision | None
    holds: Holds
    last_clean_at: str | None = Field(
        description="when the host was last seen clean: its report's time if clean now, else when "
        "a tick first saw the problem that followed; null: not known"
    )
    held_by: list[HoldInForce] = Field(description="every hold in force now; empty: nothing holds it")
    activation: dict[str, Any] | None
    recent_activations: list[dict[str, Any]]


class ActivationOut(BaseModel):
    """An activation request's answer: 202 while it runs, 200 with its outcome."""

    task_id: str = Field(description="the Celery task id (equal to the activation id)")
    activation_id: str
    host_id: str
    state: str
    outcome: str | None = None
    reason: str | None = None
    detail: str | None = None


class AuditEntry(BaseModel):
    """One audit record."""

    id: int
    at: str
    object_type: str
    object_id: str
    event: str
    actor: str
    reason: str | None
    details: dict[str, Any]


class AuditPage(BaseModel):
    """One page of the audit log; pass ``next_before`` as ``before`` for older entries."""

    entries: list[AuditEntry]
    next_before: int | None


class PlanEntry(BaseModel):
    """What the next tick would do for one host, and why."""

    host_id: str
    cluster: str
    status: str
    next_status: str
    action: str
    code: str
    detail: str
    problems: list[Problem]


class Plan(BaseModel):
    """The dry run of the next tick."""

    gate: str | None = Field(description="why the observer stops automatic activation; null: it does not")
    pauses: list[PauseOut]
    hosts: list[PlanEntry]
    activate: int
    skip: int


class ErrorOut(BaseModel):
    """Every error answer; extra keys (``holder``, ``errors``, ``checks``) add context."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    field: str | None


class VmRunOut(BaseModel):
    """What a VM run did: the hosts it charged and those it put in error."""

    vm_run: int = Field(description="the stored run's id")
    vm_id: str
    charged: dict[str, int] = Field(
        description="each host this run charged, with its charges within the window (this one included)"
    )
    errored: list[str] = Field(description="hosts this run put in error")
    error_until: str | None = Field(description="when the hosts put in error may come back; null: none")


class PlacementHost(BaseModel):
    """One up host's place in the ranking: its score and the terms it adds up."""

    host_id: str
    score: float = Field(description="the sum of the terms; higher is better")
    terms: dict[str, float] = Field(description="free_memory, vms_running and recent_charges")
    vms_running: int
    mem_free_mb: int
    recent_charges: int = Field(description="VMs failed here and started elsewhere, within the window")


class PlacementOut(BaseModel):
    """A cluster's up hosts, best first; error and other non-up hosts are left out."""

    cluster: str
    hosts: list[PlacementHost]


class StorageDomainOut(BaseModel):
    """A storage domain: its status from monitoring (or maintenance) and its autorecovery flag."""

    id: str
    status: str = Field(description="active, inactive or maintenance")
    autorecovery: bool
    last_seen_at: str | None = Field(description="when an up host last reached it")
    status_changed_at: str | None
    detail: str | None


class StorageDomainList(BaseModel):
    """Every storage domain, by id."""

    storage_domains: list[StorageDomainOut]


class StorageDomainDetail(StorageDomainOut):
    """A storage domain with its clusters and the activation queued or running, if any."""

    clusters: list[str]
    activation: dict[str, Any] | None


class StorageActivationOut(BaseModel):
    """A queued storage domain activation."""

    task_id: str = Field(description="the Celery task id (equal to the activation id)")
    activation_id: str
    storage_domain_id: str
    state: str


class ReportResult(BaseModel):
    """What became of one report of a bulk push."""

    index: int
    host_id: str | None
    status: str = Field(description="accepted or refused")
    error: str | None = Field(description="why refused: invalid_input, forbidden, not_found, bad_report")
    field: str | None = Field(description="the field at fault, as reports[i].name")
    message: str | None


class ReportsOut(BaseModel):
    """A bulk push's outcome: counts and one result per report, in the order sent."""

    accepted: int
    refused: int
    stored: int = Field(description="accepted reports newer than the one stored (the others are kept)")
    results: list[ReportResult]


class HostBatchOut(BaseModel):
    """A batch registration: the hosts created, or (dry run) the hosts that would be."""

    dry_run: bool
    hosts: int
    created: list[str]
