"""The ports: what services need from the outside, as ``Protocol``s, and the rows they read.

Each repository is implemented twice: a PostgreSQL module in ``autorecovery/adapters/store``
(mypy accepts a module as a protocol implementation) and an in-memory class in ``tests/fakes``.
``Repos`` bundles one of each kind; mypy strict checks both against these protocols, and
``tests/contract`` runs the same tests on both. A repository takes a connection and never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypedDict

from autorecovery.adapters.agents import AgentClient
from models.domain import Cluster, Host, Report, StorageDomain
from models.placement import Attempt
from models.policy import Decision, Transition
from models.safety import Pause

if TYPE_CHECKING:
    from autorecovery.adapters.store.activations import ActivationRow
    from autorecovery.adapters.store.db import Conn


class HostState(TypedDict):
    """What the store keeps of a host beside ``Host``: its last decision and why it is held."""

    last_decision: str | None
    last_decision_detail: str | None
    last_decision_at: datetime | None
    quarantine_reason: str | None
    subject: str | None
    report_received_at: datetime | None


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


class Enqueuer(Protocol):
    """Sends an activation to the workers (Celery in production); the task id is its id."""

    def __call__(self, activation_id: str, object_id: str, trigger: str, actor: str, /) -> None:
        """Queue the activation of a host (or a storage domain); raise BrokerUnavailable."""
        ...


class Lock(Protocol):
    """A per-object lock with an owner's token, a TTL and renewal (``adapters/locks.py``)."""

    @property
    def token(self) -> str | None:
        """The owner's token, once acquired."""
        ...

    @property
    def is_lost(self) -> bool:
        """True when a renewal found the lock no longer ours."""
        ...

    def acquire(self) -> bool:
        """Try once to take the lock; False when someone else holds it."""
        ...

    def renew(self) -> bool:
        """Reset the TTL if still owned; False when lost."""
        ...

    def release(self) -> None:
        """Release the lock if still owned."""
        ...

    def start_renewing(self) -> None:
        """Renew in the background until released."""
        ...

    def stop_renewing(self) -> None:
        """Stop renewing."""
        ...

    def __enter__(self) -> Lock:
        """Use the lock in a ``with`` block that releases it."""
        ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release the lock."""
        ...


class HostsRepo(Protocol):
    """Clusters, hosts and their latest reports."""

    def all_clusters(self, conn: Conn) -> dict[str, Cluster]:
        """Return every cluster by id."""
        ...

    def get_cluster(self, conn: Conn, cluster_id: str) -> Cluster | None:
        """Return one cluster, or None."""
        ...

    def upsert_cluster(self, conn: Conn, cluster: Cluster) -> bool:
        """Create or update a cluster; True when created."""
        ...

    def insert_host(self, conn: Conn, host_id: str, cluster_id: str, agent_url: str, now: datetime) -> bool:
        """Register a host; False when the id is taken."""
        ...

    def get_host(self, conn: Conn, host_id: str, *, for_update: bool = False) -> HostRow | None:
        """Return a host with its report and state, or None."""
        ...

    def batch_after(self, conn: Conn, after: str, limit: int) -> list[HostRow]:
        """Return the next ``limit`` hosts after id ``after``."""
        ...

    def list_hosts(
        self,
        conn: Conn,
        *,
        status: str | None = None,
        cluster_id: str | None = None,
        autorecovery: bool | None = None,
        limit: int = 1000,
        after: str = "",
    ) -> list[HostRow]:
        """Return hosts matching the filters, ordered by id."""
        ...

    def upsert_reports(self, conn: Conn, reports: Sequence[Report], received_at: datetime) -> int:
        """Store the latest reports; never replace a newer one."""
        ...

    def apply_transitions(
        self, conn: Conn, changes: Sequence[Transition], now: datetime, actor: str
    ) -> list[str]:
        """Apply guarded status changes, auditing each; return changed ids."""
        ...

    def record_decisions(self, conn: Conn, decisions: Sequence[Decision], now: datetime) -> int:
        """Store each host's latest decision."""
        ...

    def set_autorecovery(self, conn: Conn, host_id: str, enabled: bool) -> bool | None:
        """Set the flag; return the previous value, or None for an unknown host."""
        ...

    def set_status(
        self,
        conn: Conn,
        host_id: str,
        status: str,
        reason: str | None,
        detail: str | None,
        now: datetime,
        *,
        fence: int | None = None,
    ) -> bool:
        """Set a host's status, with ``fence`` only while the fence is that token."""
        ...

    def set_agent_url(self, conn: Conn, host_id: str, agent_url: str) -> str | None:
        """Set the agent URL; return the previous one, or None for an unknown host."""
        ...

    def raise_fence(self, conn: Conn, host_id: str, fence: int, at_least: int) -> bool:
        """Move the fence up to ``at_least`` while it is still ``fence``."""
        ...

    def delete_host(self, conn: Conn, host_id: str) -> bool:
        """Delete a host with no activation in flight."""
        ...

    def count_by_status(self, conn: Conn) -> dict[str, int]:
        """Return the number of hosts in each status."""
        ...


class ActivationsRepo(Protocol):
    """Host activation records: one in flight per host, fenced writes, the reaper."""

    def create_many(
        self,
        conn: Conn,
        items: Sequence[tuple[str, str]],
        *,
        trigger: str,
        actor: str,
        now: datetime,
        statuses: Sequence[str],
        reason: str,
    ) -> list[tuple[str, str]]:
        """Queue activations for (activation_id, host_id) pairs, auditing each."""
        ...

    def get(self, conn: Conn, activation_id: str) -> ActivationRow | None:
        """Return one activation, or None."""
        ...

    def in_flight(self, conn: Conn, host_id: str) -> ActivationRow | None:
        """Return the host's queued or running activation, or None."""
        ...

    def recent(self, conn: Conn, host_id: str, limit: int = 10) -> list[ActivationRow]:
        """Return the host's latest activations, newest first."""
        ...

    def begin(self, conn: Conn, activation_id: str, now: datetime) -> int | None:
        """Mark running and issue the fencing token."""
        ...

    def finish(
        self,
        conn: Conn,
        activation_id: str,
        *,
        state: str,
        outcome: str,
        reason: str | None,
        detail: str | None,
        now: datetime,
        fence: int | None,
    ) -> bool:
        """Close an in-flight activation, fenced."""
        ...

    def reap(
        self, conn: Conn, *, now: datetime, queued_before: datetime, running_before: datetime
    ) -> list[dict[str, Any]]:
        """Abandon activations stuck too long."""
        ...

    def reset_orphans(self, conn: Conn, *, now: datetime, before: datetime) -> list[str]:
        """Return orphaned ``initializing`` hosts to non_operational."""
        ...

    def mark_enqueue_failed(
        self, conn: Conn, pairs: Sequence[tuple[str, str]], now: datetime, error: str
    ) -> None:
        """Close activations whose message never reached the broker."""
        ...

    def count_by_outcome(self, conn: Conn) -> list[dict[str, Any]]:
        """Count activations by trigger and outcome."""
        ...


class AuditRepo(Protocol):
    """The audit log."""

    def add(
        self,
        conn: Conn,
        *,
        at: datetime,
        object_type: str,
        object_id: str,
        event: str,
        actor: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one entry in the caller's transaction."""
        ...

    def query(
        self,
        conn: Conn,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        actor: str | None = None,
        event: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return entries matching the filters, newest first."""
        ...


class SafetyRepo(Protocol):
    """Pauses, the observer's state, caps, backoff, quarantine and incidents."""

    def active_pauses(self, conn: Conn, now: datetime) -> dict[str, Pause]:
        """Drop expired pauses and return the rest by scope."""
        ...

    def list_pauses(self, conn: Conn) -> dict[str, Pause]:
        """Return every stored pause by scope."""
        ...

    def set_pause(self, conn: Conn, pause: Pause) -> None:
        """Create or replace a scope's pause."""
        ...

    def lift_pause(self, conn: Conn, scope: str) -> Pause | None:
        """Delete a scope's pause and return it."""
        ...

    def observer_state(self, conn: Conn) -> dict[str, Any]:
        """Return what the last tick saw."""
        ...

    def record_observer(
        self, conn: Conn, *, now: datetime, gate: str | None, silent: int, observed: int
    ) -> None:
        """Record a full tick."""
        ...

    def lock_admission(self, conn: Conn) -> None:
        """Serialise admissions until the transaction ends."""
        ...

    def in_flight_by_cluster(self, conn: Conn) -> dict[str, int]:
        """Return activations in flight per cluster."""
        ...

    def cluster_sizes(self, conn: Conn) -> dict[str, int]:
        """Return hosts per cluster."""
        ...

    def record_failure(self, conn: Conn, host_id: str, fence: int, next_attempt_at: datetime) -> int | None:
        """Count a failed automatic activation; return the failures."""
        ...

    def failures_of(self, conn: Conn, host_id: str) -> int:
        """Return a host's failed automatic activations in a row."""
        ...

    def clear_holds(
        self, conn: Conn, host_id: str, *, quarantine: bool, now: datetime | None = None
    ) -> dict[str, Any] | None:
        """Reset backoff (and quarantine); return what it was."""
        ...

    def auto_ends_since(self, conn: Conn, host_id: str, since: datetime) -> int:
        """Count a host's automatic activations ended since ``since``."""
        ...

    def quarantine(self, conn: Conn, host_id: str, now: datetime, reason: str) -> bool:
        """Quarantine a host unless it already is."""
        ...

    def track_incidents(
        self, conn: Conn, *, now: datetime, since: datetime, min_hosts: int
    ) -> list[dict[str, Any]]:
        """Open and close incidents."""
        ...

    def open_incidents(self, conn: Conn) -> list[dict[str, Any]]:
        """Return the incidents still open."""
        ...


class StorageRepo(Protocol):
    """Storage domains and their activations."""

    def ensure(self, conn: Conn, sd_ids: Iterable[str], now: datetime) -> list[str]:
        """Register domains a cluster names; return the new ones."""
        ...

    def get(self, conn: Conn, sd_id: str) -> StorageDomain | None:
        """Return one domain, or None."""
        ...

    def all_domains(self, conn: Conn) -> dict[str, StorageDomain]:
        """Return every domain by id."""
        ...

    def clusters_of(self, conn: Conn, sd_id: str) -> list[str]:
        """Return the clusters a domain is attached to."""
        ...

    def set_autorecovery(self, conn: Conn, sd_id: str, enabled: bool) -> bool:
        """Set a domain's flag; False for an unknown domain."""
        ...

    def set_status(
        self,
        conn: Conn,
        sd_id: str,
        status: str,
        detail: str | None,
        now: datetime,
        *,
        fence: int | None = None,
    ) -> bool:
        """Set a domain's status, fenced with ``fence``."""
        ...

    def follow_monitoring(
        self, conn: Conn, *, now: datetime, fresh_after: datetime, inactive_before: datetime
    ) -> list[dict[str, Any]]:
        """Update every domain from the latest reports."""
        ...

    def reachable_inactive(self, conn: Conn, fresh_after: datetime) -> list[str]:
        """Inactive domains that a fresh report reaches again."""
        ...

    def connect_targets(self, conn: Conn, sd_id: str, fresh_after: datetime) -> list[dict[str, Any]]:
        """Hosts whose fresh report reaches the domain."""
        ...

    def queue_activation(
        self, conn: Conn, activation_id: str, sd_id: str, *, trigger: str, actor: str, now: datetime
    ) -> bool:
        """Queue a domain activation unless one is in flight."""
        ...

    def in_flight(self, conn: Conn, sd_id: str) -> DomainActivationRow | None:
        """Return the domain's queued or running activation, or None."""
        ...

    def get_activation(self, conn: Conn, activation_id: str) -> DomainActivationRow | None:
        """Return one domain activation, or None."""
        ...

    def begin_activation(self, conn: Conn, activation_id: str, now: datetime) -> int | None:
        """Mark running and issue the domain's fence."""
        ...

    def finish_activation(
        self,
        conn: Conn,
        activation_id: str,
        *,
        state: str,
        outcome: str,
        detail: str,
        now: datetime,
        fence: int | None,
    ) -> bool:
        """Close an in-flight domain activation, fenced."""
        ...

    def reap_activations(
        self, conn: Conn, *, now: datetime, queued_before: datetime, running_before: datetime
    ) -> int:
        """Abandon domain activations with no result in time."""
        ...


class VmRunsRepo(Protocol):
    """VM runs, charges and the error state."""

    def add_run(self, conn: Conn, vm_id: str, attempts: Sequence[Attempt], actor: str, now: datetime) -> int:
        """Store a VM run; return its id."""
        ...

    def add_charges(
        self,
        conn: Conn,
        run_id: int,
        vm_id: str,
        charged: Sequence[Attempt],
        now: datetime,
        window_start: datetime,
    ) -> dict[str, int]:
        """Charge hosts; return each one's charges in the window."""
        ...

    def recent_charges(self, conn: Conn, since: datetime, cluster_id: str | None = None) -> dict[str, int]:
        """Return charges per host since ``since``."""
        ...

    def enter_error(
        self, conn: Conn, host_ids: Sequence[str], until: datetime, now: datetime, detail: str
    ) -> list[str]:
        """Put up hosts in ``error`` until ``until``; return those that changed."""
        ...

    def clear_charges(self, conn: Conn, host_id: str) -> int:
        """Forget a host's charges and error period."""
        ...

    def known_hosts(self, conn: Conn, host_ids: Sequence[str]) -> set[str]:
        """Return which ids are registered."""
        ...


@dataclass(frozen=True)
class Repos:
    """The repositories a service uses: PostgreSQL modules or in-memory fakes."""

    hosts: HostsRepo
    activations: ActivationsRepo
    audit: AuditRepo
    safety: SafetyRepo
    storage: StorageRepo
    vmruns: VmRunsRepo


__all__ = [
    "ActivationsRepo",
    "AgentClient",
    "AuditRepo",
    "DomainActivationRow",
    "Enqueuer",
    "HostRow",
    "HostState",
    "HostsRepo",
    "Lock",
    "Repos",
    "SafetyRepo",
    "StorageRepo",
    "VmRunsRepo",
]
