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


class Decision(BaseModel):
    """A decision code and the sentence that explains it."""

    code: str | None
    detail: str | None
    at: str | None = None


class HostSummary(BaseModel):
    """A host in a list."""

    id: str
    cluster: str
    agent_url: str
    status: str
    reason: str | None
    detail: str | None
    autorecovery: bool
    status_changed_at: str | None
    report_age_s: float | None
    in_flight: bool
    last_decision: str | None


class HostPage(BaseModel):
    """One page of hosts; pass ``next_after`` as ``after`` for the next."""

    hosts: list[HostSummary]
    next_after: str | None


class HostDetail(BaseModel):
    """A host with its latest assessment, last decision, and why it is not back."""

    id: str
    cluster: str
    agent_url: str
    status: str
    reason: str | None
    detail: str | None
    autorecovery: bool
    status_changed_at: str | None
    report_age_s: float | None
    report: dict[str, Any] | None
    problems: list[Problem]
    last_decision: Decision
    why_not_recovered: Decision | None
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

    hosts: list[PlanEntry]
    activate: int
    skip: int


class ErrorOut(BaseModel):
    """Every error answer; extra keys (``holder``, ``errors``, ``checks``) add context."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str
    field: str | None
