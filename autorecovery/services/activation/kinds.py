"""What the activation core knows of an activation, and what a kind of object supplies."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from autorecovery.adapters.store.db import Conn
from autorecovery.ports import (
    ActivationsRepo,
    AuditRepo,
    HostsRepo,
    Lock,
    SafetyRepo,
    StorageRepo,
    VmRunsRepo,
)
from models.domain import ActivationState, Reason, Trigger
from models.errors import LockServiceUnavailable


class LockBusyRetry(LockServiceUnavailable):
    """Another delivery of this activation (or its dead predecessor) holds the object's lock."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class ActivationRef:
    """An activation record, as the core reads it for any kind of object."""

    id: str
    object_id: str
    state: str
    fence: int | None
    trigger: str
    actor: str
    outcome: str | None = None
    #: What the agent answered while ``sent``: 'running', or 'unknown' (its answer unseen).
    answer: str | None = None
    #: The agent protocol the init was sent with (2: it can be asked how it went).
    protocol: int = 1
    #: The object's status before the activation changed it (recorded with ``sent``).
    was_status: str | None = None
    #: The record's deadline (PostgreSQL's clock) had passed when it was read.
    past_deadline: bool = False
    #: The record's deadline (PostgreSQL's clock), while ``sent``.
    deadline_at: datetime | None = None
    #: The task id of the only check step that may act on the ``sent`` record (None: any).
    check_task_id: str | None = None
    #: The host a storage domain's connect went through (while ``sent``).
    target: str | None = None


@dataclass(frozen=True, slots=True)
class Run:
    """One step of an activation under its object's lock and its fence."""

    activation_id: str
    object_id: str
    fence: int
    trigger: Trigger
    actor: str
    lock: Lock
    #: An earlier attempt of this activation began it (its worker died or it was retried).
    resumed: bool = False
    #: The state the record must still be in for this step to act (``sending`` or ``sent``).
    state: str = ActivationState.SENDING


@dataclass(frozen=True, slots=True)
class Closing:
    """How an activation ends: its record's state, outcome, reason and detail."""

    state: str
    outcome: str
    detail: str
    reason: str | None = None

    @property
    def is_failure(self) -> bool:
        """True when the activation failed (not skipped, not an infrastructure outcome)."""
        return self.state == ActivationState.FAILED

    @classmethod
    def lock_lost(cls, detail: str) -> Closing:
        """The lock was lost before a side effect: abandoned, charged to nobody."""
        return cls(ActivationState.ABANDONED, "lock_lost", detail, reason=Reason.ACTIVATION_FAILED.value)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one step of an activation came to (the task's return value)."""

    activation_id: str
    object_id: str
    outcome: str
    detail: str
    fence: int | None = None
    #: The activation ended failed: the task then ends in a failure state, after recording it.
    failed: bool = field(default=False, compare=False)
    id_field: str = field(default="host_id", compare=False)
    #: The activation is ``sent``: its next step (ask, close) is due in this many seconds.
    check_in_s: float | None = field(default=None, compare=False)
    #: That next step's task id: the only check step that may act on the record then.
    next_check_id: str | None = field(default=None, compare=False)

    @property
    def host_id(self) -> str:
        """The activated object's id (a host's, for host activations)."""
        return self.object_id

    def as_dict(self) -> dict[str, Any]:
        """Present the outcome as JSON."""
        return {
            "activation_id": self.activation_id,
            self.id_field: self.object_id,
            "outcome": self.outcome,
            "detail": self.detail,
            "fence": self.fence,
        }


class Naming:
    """Outcomes that name the object by this kind's field (``host_id``, ``sd_id``)."""

    id_field = "host_id"

    def outcome(
        self,
        activation_id: str,
        object_id: str,
        outcome: str,
        detail: str,
        fence: int | None = None,
        *,
        failed: bool = False,
        check_in_s: float | None = None,
    ) -> Outcome:
        """Build an outcome naming the object as this kind does."""
        return Outcome(
            activation_id,
            object_id,
            outcome,
            detail,
            fence,
            failed=failed,
            id_field=self.id_field,
            check_in_s=check_in_s,
        )


class Kind(Protocol):
    """A kind of activated object (hosts, storage domains): its records, lock and steps."""

    noun: str
    object_type: str

    @property
    def audit_log(self) -> AuditRepo:
        """Where the kind's events are audited."""
        ...

    def lock_key(self, object_id: str) -> str:
        """Redis key of the object's lock."""
        ...

    def load(self, conn: Conn, activation_id: str) -> ActivationRef | None:
        """Read one activation record."""
        ...

    def begin(self, conn: Conn, activation_id: str, now: datetime) -> int | None:
        """Mark it ``sending`` and issue its fence; None when it is no longer queued or sending."""
        ...

    def finish(
        self, conn: Conn, activation_id: str, closing: Closing, now: datetime, fence: int | None
    ) -> bool:
        """Close it while it still holds ``fence`` (None: only if it never began)."""
        ...

    def raise_fence(self, conn: Conn, object_id: str, fence: int, at_least: int) -> bool:
        """Move the object's fence up to ``at_least`` while it is still ``fence``."""
        ...

    def release(self, conn: Conn, ref: ActivationRef, error: str, now: datetime) -> None:
        """Put the object back after a give-up, under the given-up activation's fence."""
        ...

    def outcome(
        self,
        activation_id: str,
        object_id: str,
        outcome: str,
        detail: str,
        fence: int | None = None,
        *,
        failed: bool = False,
        check_in_s: float | None = None,
    ) -> Outcome:
        """Build an outcome naming the object as this kind does."""
        ...

    def work(self, run: Run) -> Outcome:
        """The first step once begun: re-check, send; raise LockLost or StaleFence to stop."""
        ...

    def settle(self, run: Run, ref: ActivationRef) -> Outcome:
        """A later step of a ``sent`` activation: ask the agent, close, or ask again later."""
        ...

    def record_step(
        self,
        activation_id: str,
        step: str,
        task_id: str | None,
        outcome: str,
        next_check: str | None = None,
    ) -> None:
        """Record one step of the activation (for ``hosts show``) and the check it sends next
        (the only one that may act then); best effort."""
        ...


class HostStore(Protocol):
    """The repositories a host activation uses (``Repos`` is one; so is the in-memory fake)."""

    @property
    def hosts(self) -> HostsRepo:
        """Hosts, their status, fences and holds."""
        ...

    @property
    def activations(self) -> ActivationsRepo:
        """Activation records and their steps."""
        ...

    @property
    def audit(self) -> AuditRepo:
        """The audit log."""
        ...

    @property
    def safety(self) -> SafetyRepo:
        """Backoff, quarantine and pauses."""
        ...

    @property
    def storage(self) -> StorageRepo:
        """Storage domains (the gates a host waits on)."""
        ...

    @property
    def vmruns(self) -> VmRunsRepo:
        """Charges (cleared when a host is back from error)."""
        ...


class DomainStore(Protocol):
    """The repositories a storage-domain activation uses."""

    @property
    def hosts(self) -> HostsRepo:
        """The hosts a connect goes through."""
        ...

    @property
    def storage(self) -> StorageRepo:
        """Storage domains, their activation records and fences."""
        ...

    @property
    def audit(self) -> AuditRepo:
        """The audit log."""
        ...
