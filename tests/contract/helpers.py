"""Helpers the contract tests share: a fixed time, seeding, and short reads of one backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from autorecovery.ports import HostState
from models.domain import Cluster, HostStatus, Report
from tests.contract.conftest import Backend

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
NON_OP = HostStatus.NON_OPERATIONAL
RECOVERABLE = ["non_operational", "non_responsive"]

#: What a host row carries beside the Host and its Report (both backends build it alike).
HOST_ROW_KEYS = set(HostState.__required_keys__)
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


def host_row(backend: Backend, host_id: str) -> HostState:
    with tx(backend) as conn:
        loaded = backend.repos.hosts.get_host(conn, host_id)
    assert loaded is not None, host_id
    return loaded.state


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


def is_db_now(value: datetime | None) -> bool:
    """True for a time stamped by the database's clock just now (not by a caller's ``now``)."""
    return value is not None and abs(value - datetime.now(UTC)) < timedelta(seconds=60)


def backdate(backend: Backend, table: str, activation_id: str, seconds: float) -> None:
    """Move an activation's lease times back by ``seconds``, as if it had been leased earlier.

    The leases are the database's clock, which a test cannot move: it moves the rows instead.
    """
    if backend.name == "memory":
        row = getattr(backend.db.state, table)[activation_id]
        for column in ("queued_at", "started_at", "sent_at", "ended_at"):
            if row.get(column) is not None:
                row[column] -= timedelta(seconds=seconds)
        return
    with tx(backend) as conn:
        conn.execute(_BACKDATE[table], {"s": seconds, "id": activation_id})


_BACKDATE = {
    "ticks": """
        UPDATE ticks SET started_at = started_at - make_interval(secs => %(s)s),
            ended_at = ended_at - make_interval(secs => %(s)s)
        WHERE id = %(id)s""",
    "activations": """
        UPDATE activations SET queued_at = queued_at - make_interval(secs => %(s)s),
            started_at = started_at - make_interval(secs => %(s)s),
            sent_at = sent_at - make_interval(secs => %(s)s)
        WHERE id = %(id)s""",
    "sd_activations": """
        UPDATE sd_activations SET queued_at = queued_at - make_interval(secs => %(s)s),
            started_at = started_at - make_interval(secs => %(s)s)
        WHERE id = %(id)s""",
}
