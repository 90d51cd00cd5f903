"""The ports: what services need from the outside, as ``Protocol``s, and the rows they read.

``repositories`` (one protocol per PostgreSQL module in ``autorecovery/adapters/store``, bundled
in ``Repos``), ``rows`` (what they return), ``runtime`` (the enqueuer and the lock); the agent
client's port is ``autorecovery.adapters.agents.AgentClient``. The PostgreSQL modules (mypy
accepts a module as a protocol implementation) and the in-memory fakes in ``tests/fakes`` are both
checked against them by mypy strict, and ``tests/contract`` runs the same tests on both.
"""

from __future__ import annotations

from dataclasses import dataclass

from autorecovery.ports.agents import AgentClient
from autorecovery.ports.repositories import (
    ActivationsRepo,
    AuditRepo,
    HostsRepo,
    RetentionRepo,
    SafetyRepo,
    StorageRepo,
    TicksRepo,
    VmRunsRepo,
)
from autorecovery.ports.rows import (
    ActivationRow,
    BatchHost,
    DomainActivationRow,
    FencePush,
    HostRow,
    HostState,
    StepRow,
)
from autorecovery.ports.runtime import CheckSender, Enqueuer, Lock, LockFactory


@dataclass(frozen=True)
class Repos:
    """The repositories a service uses: PostgreSQL modules or in-memory fakes."""

    hosts: HostsRepo
    activations: ActivationsRepo
    audit: AuditRepo
    safety: SafetyRepo
    storage: StorageRepo
    vmruns: VmRunsRepo
    ticks: TicksRepo
    retention: RetentionRepo


__all__ = [
    "ActivationRow",
    "ActivationsRepo",
    "AgentClient",
    "AuditRepo",
    "DomainActivationRow",
    "CheckSender",
    "Enqueuer",
    "FencePush",
    "BatchHost",
    "HostRow",
    "HostState",
    "HostsRepo",
    "RetentionRepo",
    "Lock",
    "LockFactory",
    "Repos",
    "SafetyRepo",
    "StepRow",
    "StorageRepo",
    "TicksRepo",
    "VmRunsRepo",
]
