"""The rows services read from the repositories, typed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, NotRequired, TypedDict

import psycopg

from models.domain import Host, Report

#: A connection in a transaction, as repositories take it (rows as dictionaries).
Conn = psycopg.Connection[dict[str, Any]]


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


class BatchHost(NamedTuple):
    """What a tick reads of a host of its batch before the pull: enough to pull its report and
    to tell whether its last evaluation still holds. A host evaluated again is then read whole
    (``batch_rows``); a steady one costs only these columns.
    """

    id: str
    cluster_id: str
    status: str
    agent_url: str
    #: Its stored report's source and date (None: no report stored yet).
    report_source: str | None
    report_reported_at: datetime | None
    #: As in ``HostState``.
    report_digest: str | None
    host_key: str | None
    eval_key: str | None
    eval_until: datetime | None
    eval_code: str | None
    eval_silent: bool | None


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
    #: While ``sent``: 'unknown' (the connect's answer was not seen), the host it went through,
    #: and until when the record holds the domain (PostgreSQL's clock).
    answer: NotRequired[str | None]
    target: NotRequired[str | None]
    deadline_at: NotRequired[datetime | None]
    past_deadline: NotRequired[bool]


@dataclass(frozen=True, slots=True)
class ActivationRow:
    """One activation as stored."""

    id: str
    host_id: str
    trigger: str
    actor: str
    state: str
    fence: int | None
    outcome: str | None
    reason: str | None
    detail: str | None
    queued_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    #: What the agent answered to the init while ``sent``: 'running', or 'unknown' (unseen).
    answer: str | None = None
    #: The agent protocol the init was sent with (2: it can be asked how the init went).
    protocol: int | None = None
    #: The host's status before ``initializing`` (recorded with ``sent``, for the close).
    was_status: str | None = None
    #: Until when (PostgreSQL's clock) a ``sent`` record holds the host.
    deadline_at: datetime | None = None
    #: True when ``deadline_at`` has passed on PostgreSQL's clock (as read).
    past_deadline: bool = False
    #: The task id of the check step that may act next (None: any may).
    check_task_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Present the activation as JSON."""
        return {
            "id": self.id,
            "host_id": self.host_id,
            "trigger": self.trigger,
            "actor": self.actor,
            "state": self.state,
            "fence": self.fence,
            "outcome": self.outcome,
            "reason": self.reason,
            "detail": self.detail,
            "queued_at": self.queued_at.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "answer": self.answer,
            "deadline_at": self.deadline_at.isoformat() if self.deadline_at else None,
        }


@dataclass(frozen=True, slots=True)
class StepRow:
    """One step of an activation: its task (the Celery task id) and what it came to."""

    activation_id: str
    step: str
    task_id: str | None
    outcome: str
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        """Present the step as JSON."""
        return {
            "step": self.step,
            "task_id": self.task_id,
            "outcome": self.outcome,
            "at": self.at.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class FencePush:
    """A fence the host's agent has not been told yet."""

    host_id: str
    agent_url: str
    fence: int


@dataclass(frozen=True, slots=True)
class PushedCut:
    """How a tick cuts the hosts that pushed their reports into batches.

    A host whose report was pushed between ``after`` and ``before`` is not pulled (``needs_pull``):
    its batch has no HTTP to spread, only rows to read, so up to ``size`` of them share a batch,
    against ``batch_size`` hosts to pull. A batch mixing both holds the same share of each.
    """

    size: int
    after: datetime
    before: datetime


@dataclass(frozen=True, slots=True)
class TickClaim:
    """What a coordinator got: a tick to run (with its batch bounds), or why not."""

    tick_id: str | None
    refused: str | None = None
    took_over: str | None = None
    bounds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchDone:
    """What finishing a batch meant for its tick."""

    recorded: bool
    closes: bool


@dataclass(frozen=True, slots=True)
class BatchWindow:
    """What tells a settled host from one to evaluate: the tick, its time and limits.

    The key of the tick's context is read from the tick's row (``ticks.keep_context``).
    """

    now: datetime
    #: A report pushed within this many seconds before ``now`` is not pulled (``needs_pull``).
    pushed_within_s: float
    max_clock_skew_s: float
    max_report_age_s: float
    #: Times that run out within this margin after ``now`` count as run out.
    margin_s: float
    tick_id: str


@dataclass(frozen=True, slots=True)
class SettledCount:
    """Hosts of a batch whose last evaluation holds, by the decision it made."""

    code: str
    hosts: int
    observed: int
    silent: int
    #: The first of the silent ones, by id (``models.safety.silent_examples``).
    silent_ids: list[str]


@dataclass(frozen=True, slots=True)
class Evaluated:
    """What the store keeps of one host's evaluation (``key`` None: evaluate it again next tick)."""

    host_id: str
    key: str | None
    until: datetime | None
    code: str
    silent: bool


@dataclass(frozen=True, slots=True)
class BatchStart:
    """What a batch learns of its tick as it starts: why not to run, or the tick's context."""

    refused: str | None
    context_key: str | None = None
    #: The context as the coordinator kept it (None when not asked for, or not kept).
    context: dict[str, Any] | None = None
