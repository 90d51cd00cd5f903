"""The agent's view of the hypervisor (a ``Protocol``), whatever drives it: libvirt in production."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from models.errors import TransientError


class HypervisorError(TransientError):
    """The hypervisor manager (libvirt) could not be reached or refused a call."""


@dataclass(frozen=True, slots=True)
class ObjectState:
    """A libvirt network or storage pool: defined? active? and what starting it needs.

    A pool has its ``kind`` (libvirt's pool type: ``dir``, ``fs``, ``netfs``, ``logical``, …), its
    target path and its source devices; a network the host devices it forwards to (``sources``:
    interface names), which must exist for it to start.
    """

    defined: bool
    active: bool = False
    target: Path | None = None
    kind: str | None = None
    sources: tuple[str, ...] = ()


class Hypervisor(Protocol):
    """What the agent asks of the hypervisor; every call raises ``HypervisorError`` on failure."""

    uri: str

    def is_alive(self) -> bool:
        """True when the connection answers (reconnecting once if it was lost); never raises."""
        ...

    def version(self) -> str:
        """The hypervisor manager's version, dotted."""
        ...

    def cpu_flags(self) -> frozenset[str]:
        """The host CPU's features as the hypervisor manager lists them."""
        ...

    def running_domains(self) -> int:
        """How many VMs run."""
        ...

    def kvm_unavailable(self) -> str | None:
        """Why the hypervisor offers no kvm domain, or None when it does (or cannot tell)."""
        ...

    def network(self, name: str) -> ObjectState:
        """The state of virtual network ``name``."""
        ...

    def pool(self, name: str) -> ObjectState:
        """The state of storage pool ``name``."""
        ...

    def start_network(self, name: str) -> None:
        """Start network ``name`` when it is not active."""
        ...

    def start_pool(self, name: str) -> None:
        """Start storage pool ``name`` when it is not active, else refresh it."""
        ...
