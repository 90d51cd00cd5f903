"""The rows services read from the repositories, typed."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, TypedDict

from models.domain import Host, Report


class HostState(TypedDict):
    """What the store keeps of a host beside ``Host``: its last decision and why it is held."""

    last_decision: str | None
    last_decision_detail: str | None
    last_decision_at: datetime | None
    quarantine_reason: str | None
    subject: str | None
    report_received_at: datetime | None
    #: The host's queued or running activation, if any (what tracks an init its agent reports).
    in_flight_id: str | None
    #: When its report stopped being clean (kept by a PostgreSQL trigger), if it is not now.
    last_clean_at: datetime | None
    #: Why the host is held for a security event (``agent_fence_ahead``), in words.
    agent_hold_detail: str | None
    #: When its agent last answered with a usable report (kept by a PostgreSQL trigger), if ever.
    report_heard_at: datetime | None
    #: What the tick needs to tell whether anything changed (``models.changes``): the store's
    #: hash of the host's row, its report's digest, and the key, time and outcome of its last
    #: evaluation.
    host_key: str | None
    report_digest: str | None
    eval_key: str | None
    eval_until: datetime | None
    eval_code: str | None
    eval_silent: bool | None


class HostRow(NamedTuple):
    """A host as the store has it: the domain object, its latest report, and its state."""

    host: Host
    report: Report | None
    state: HostState


class DomainActivationRow(TypedDict):
    """One storage domain activation as stored."""

    id: str
    sd_id: str
    trigger: str
    actor: str
    state: str
    fence: int | None
    outcome: str | None
    detail: str | None
    queued_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
