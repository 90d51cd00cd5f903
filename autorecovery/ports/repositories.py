"""The repository ports: one ``Protocol`` per PostgreSQL module in ``autorecovery/adapters/store``.

Each method means what its namesake in that module says (the docstrings live there, once). The
in-memory fakes in ``tests/fakes`` implement the same protocols; mypy checks both, and
``tests/contract`` runs one set of tests on both. A repository takes a connection, never commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from autorecovery.ports.rows import DomainActivationRow, HostRow
from models.domain import Cluster, Report, StorageDomain
from models.placement import Attempt
from models.policy import Decision, Transition
from models.safety import Pause

if TYPE_CHECKING:
    from autorecovery.adapters.store.activations import ActivationRow
    from autorecovery.adapters.store.db import Conn
    from autorecovery.adapters.store.hosts import FencePush
    from autorecovery.adapters.store.ticks import BatchDone, TickClaim


class HostsRepo(Protocol):
    """Clusters, hosts and their latest reports."""

    def all_clusters(self, conn: Conn) -> dict[str, Cluster]: ...
    def get_cluster(self, conn: Conn, cluster_id: str) -> Cluster | None: ...
    def upsert_cluster(self, conn: Conn, cluster: Cluster) -> bool: ...
    def insert_host(
        self, conn: Conn, host_id: str, cluster_id: str, agent_url: str, now: datetime
    ) -> bool: ...
    def get_host(self, conn: Conn, host_id: str, *, for_update: bool = False) -> HostRow | None: ...
    def batch_after(self, conn: Conn, after: str, limit: int) -> list[HostRow]: ...
    def batch_between(self, conn: Conn, lo: str, hi: str | None) -> list[HostRow]: ...
    def list_hosts(
        self,
        conn: Conn,
        *,
        status: str | None = None,
        cluster_id: str | None = None,
        autorecovery: bool | None = None,
        limit: int = 1000,
        after: str = "",
    ) -> list[HostRow]: ...
    def upsert_reports(self, conn: Conn, reports: Sequence[Report], received_at: datetime) -> int: ...
    def apply_transitions(
        self, conn: Conn, changes: Sequence[Transition], now: datetime, actor: str
    ) -> list[str]: ...
    def record_decisions(self, conn: Conn, decisions: Sequence[Decision], now: datetime) -> int: ...
    def set_autorecovery(self, conn: Conn, host_id: str, enabled: bool) -> bool | None: ...
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
    ) -> bool: ...
    def set_agent_url(self, conn: Conn, host_id: str, agent_url: str) -> str | None: ...
    def raise_fence(self, conn: Conn, host_id: str, fence: int, at_least: int) -> bool: ...
    def delete_host(self, conn: Conn, host_id: str) -> bool: ...
    def count_by_status(self, conn: Conn) -> dict[str, int]: ...
    def pending_fences(self, conn: Conn, limit: int) -> list[FencePush]: ...
    def clear_fence_pending(self, conn: Conn, pushed: Sequence[FencePush]) -> int: ...


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
    ) -> list[tuple[str, str]]: ...
    def get(self, conn: Conn, activation_id: str) -> ActivationRow | None: ...
    def in_flight(self, conn: Conn, host_id: str) -> ActivationRow | None: ...
    def recent(self, conn: Conn, host_id: str, limit: int = 10) -> list[ActivationRow]: ...
    def begin(self, conn: Conn, activation_id: str, now: datetime) -> int | None: ...
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
    ) -> bool: ...
    def reap(
        self, conn: Conn, *, now: datetime, queued_ttl_s: float, running_ttl_s: float
    ) -> list[dict[str, Any]]: ...
    def resend_queued(
        self, conn: Conn, *, now: datetime, after_s: float, max_resends: int
    ) -> list[dict[str, Any]]: ...
    def reset_orphans(self, conn: Conn, *, now: datetime, before: datetime) -> list[str]: ...
    def mark_enqueue_failed(
        self, conn: Conn, pairs: Sequence[tuple[str, str]], now: datetime, error: str
    ) -> None: ...
    def count_by_outcome(self, conn: Conn) -> list[dict[str, Any]]: ...


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
    ) -> None: ...
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
    ) -> list[dict[str, Any]]: ...


class SafetyRepo(Protocol):
    """Pauses, the observer's state, caps, backoff, quarantine and incidents."""

    def active_pauses(self, conn: Conn, now: datetime) -> dict[str, Pause]: ...
    def list_pauses(self, conn: Conn) -> dict[str, Pause]: ...
    def set_pause(self, conn: Conn, pause: Pause) -> None: ...
    def lift_pause(self, conn: Conn, scope: str) -> Pause | None: ...
    def observer_state(self, conn: Conn) -> dict[str, Any]: ...
    def record_observer(
        self, conn: Conn, *, now: datetime, gate: str | None, silent: int, observed: int
    ) -> None: ...
    def lock_admission(self, conn: Conn) -> None: ...
    def in_flight_by_cluster(self, conn: Conn) -> dict[str, int]: ...
    def cluster_sizes(self, conn: Conn) -> dict[str, int]: ...
    def record_failure(
        self, conn: Conn, host_id: str, fence: int, next_attempt_at: datetime
    ) -> int | None: ...
    def failures_of(self, conn: Conn, host_id: str) -> int: ...
    def clear_holds(
        self, conn: Conn, host_id: str, *, quarantine: bool, now: datetime | None = None
    ) -> dict[str, Any] | None: ...
    def auto_ends_since(self, conn: Conn, host_id: str, since: datetime) -> int: ...
    def quarantine(self, conn: Conn, host_id: str, now: datetime, reason: str) -> bool: ...
    def track_incidents(
        self, conn: Conn, *, now: datetime, since: datetime, min_hosts: int
    ) -> list[dict[str, Any]]: ...
    def open_incidents(self, conn: Conn) -> list[dict[str, Any]]: ...


class StorageRepo(Protocol):
    """Storage domains and their activations."""

    def ensure(self, conn: Conn, sd_ids: Iterable[str], now: datetime) -> list[str]: ...
    def get(self, conn: Conn, sd_id: str) -> StorageDomain | None: ...
    def all_domains(self, conn: Conn) -> dict[str, StorageDomain]: ...
    def clusters_of(self, conn: Conn, sd_id: str) -> list[str]: ...
    def set_autorecovery(self, conn: Conn, sd_id: str, enabled: bool) -> bool: ...
    def set_status(
        self,
        conn: Conn,
        sd_id: str,
        status: str,
        detail: str | None,
        now: datetime,
        *,
        fence: int | None = None,
    ) -> bool: ...
    def follow_monitoring(
        self, conn: Conn, *, now: datetime, fresh_after: datetime, inactive_before: datetime
    ) -> list[dict[str, Any]]: ...
    def reachable_inactive(self, conn: Conn, fresh_after: datetime) -> list[str]: ...
    def connect_targets(self, conn: Conn, sd_id: str, fresh_after: datetime) -> list[dict[str, Any]]: ...
    def queue_activation(
        self, conn: Conn, activation_id: str, sd_id: str, *, trigger: str, actor: str, now: datetime
    ) -> bool: ...
    def in_flight(self, conn: Conn, sd_id: str) -> DomainActivationRow | None: ...
    def get_activation(self, conn: Conn, activation_id: str) -> DomainActivationRow | None: ...
    def begin_activation(self, conn: Conn, activation_id: str, now: datetime) -> int | None: ...
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
    ) -> bool: ...
    def reap_activations(
        self, conn: Conn, *, now: datetime, queued_ttl_s: float, running_ttl_s: float
    ) -> int: ...


class VmRunsRepo(Protocol):
    """VM runs, charges and the error state."""

    def add_run(
        self, conn: Conn, vm_id: str, attempts: Sequence[Attempt], actor: str, now: datetime
    ) -> int: ...
    def add_charges(
        self,
        conn: Conn,
        run_id: int,
        vm_id: str,
        charged: Sequence[Attempt],
        now: datetime,
        window_start: datetime,
    ) -> dict[str, int]: ...
    def recent_charges(
        self, conn: Conn, since: datetime, cluster_id: str | None = None
    ) -> dict[str, int]: ...
    def enter_error(
        self, conn: Conn, host_ids: Sequence[str], until: datetime, now: datetime, detail: str
    ) -> list[str]: ...
    def clear_charges(self, conn: Conn, host_id: str) -> int: ...
    def known_hosts(self, conn: Conn, host_ids: Sequence[str]) -> set[str]: ...


class TicksRepo(Protocol):
    """Ticks claimed by coordinators, their batches, and their closing."""

    def claim(
        self, conn: Conn, tick_id: str, *, batch_size: int, min_spacing_s: float, deadline_s: float
    ) -> TickClaim: ...
    def abandon(self, conn: Conn, tick_id: str, detail: str) -> bool: ...
    def batch_refusal(self, conn: Conn, tick_id: str, idx: int) -> str | None: ...
    def finish_batch(
        self, conn: Conn, tick_id: str, idx: int, summary: dict[str, Any], candidates: list[dict[str, Any]]
    ) -> BatchDone: ...
    def start_closing(self, conn: Conn, tick_id: str) -> bool: ...
    def batch_results(self, conn: Conn, tick_id: str) -> list[dict[str, Any]]: ...
    def close(self, conn: Conn, tick_id: str, summary: dict[str, Any]) -> float | None: ...
    def note(self, conn: Conn, tick_id: str, summary: dict[str, Any]) -> None: ...
    def get(self, conn: Conn, tick_id: str) -> dict[str, Any] | None: ...
