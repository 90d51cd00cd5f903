"""Helpers the contract tests share: a fixed time, seeding, and short reads of one backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from models.domain import Cluster, HostStatus, Report
from tests.contract.conftest import Backend

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
NON_OP = HostStatus.NON_OPERATIONAL
RECOVERABLE = ["non_operational", "non_responsive"]

HOST_ROW_KEYS = {
    "id",
    "cluster_id",
    "agent_url",
    "status",
    "reason",
    "detail",
    "autorecovery",
    "status_changed_at",
    "fence",
    "last_decision",
    "last_decision_detail",
    "last_decision_at",
    "failures",
    "next_attempt_at",
    "quarantined_at",
    "quarantine_reason",
    "subject",
    "error_until",
    "last_clean_at",
    "in_flight",
    "r_reported_at",
    "r_received_at",
    "r_source",
    "r_agent_reachable",
    "r_kvm",
    "r_version",
    "r_cpu_flags",
    "r_networks",
    "r_storage_domains",
    "r_vms_running",
    "r_mem_free_mb",
    "r_error",
}
AUDIT_KEYS = {"id", "at", "object_type", "object_id", "event", "actor", "reason", "details"}


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@contextmanager
def tx(backend: Backend) -> Iterator[Any]:
    with backend.db.transaction() as conn:
        yield conn


def seed(backend: Backend, *host_ids: str, status: str | None = "non_operational") -> None:
    """One cluster ``c1`` and the hosts, set to ``status``."""
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"})))
        for host_id in host_ids:
            assert backend.repos.hosts.insert_host(conn, host_id, "c1", f"http://{host_id}", T0)
            if status is not None:
                backend.repos.hosts.set_status(conn, host_id, status, "general", "seeded", T0)


def host(backend: Backend, host_id: str) -> Any:
    with tx(backend) as conn:
        loaded = backend.repos.hosts.get_host(conn, host_id)
    assert loaded is not None, host_id
    return loaded[0]


def host_row(backend: Backend, host_id: str) -> dict[str, Any]:
    with tx(backend) as conn:
        loaded = backend.repos.hosts.get_host(conn, host_id)
    assert loaded is not None, host_id
    return loaded[2]


def audit(backend: Backend, **filters: Any) -> list[dict[str, Any]]:
    with tx(backend) as conn:
        return list(backend.repos.audit.query(conn, **filters))


def queue(
    backend: Backend, pairs: list[tuple[str, str]], now: datetime = T0, **kw: Any
) -> list[tuple[str, str]]:
    args: dict[str, Any] = {
        "trigger": "auto",
        "actor": "auto",
        "now": now,
        "statuses": RECOVERABLE,
        "reason": "test",
    }
    args.update(kw)
    with tx(backend) as conn:
        return list(backend.repos.activations.create_many(conn, pairs, **args))


def report(host_id: str, reported_at: datetime, **kw: Any) -> Report:
    base: dict[str, Any] = {
        "kvm": True,
        "version": "4.5.2",
        "cpu_flags": frozenset({"vmx", "sse4_2"}),
        "networks": {"mgmt": True, "vmnet": False},
        "storage_domains": {"sd-1": True},
        "vms_running": 3,
        "mem_free_mb": 12000,
    }
    base.update(kw)
    return Report(host_id=host_id, reported_at=reported_at, **base)
