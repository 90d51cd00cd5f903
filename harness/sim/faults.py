"""Faults a simulated host can carry, and how one fault spec changes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from models.errors import InvalidInput

DEFAULT_INIT_FAIL_REASON = "activation_failed"
DEFAULT_INIT_FAIL_DETAIL = "simulated init failure"
MAX_DELAY_S = 86_400.0


class FaultKind(StrEnum):
    """What can be wrong with a simulated host."""

    SD_DOWN = "sd_down"
    NIC_DOWN = "nic_down"
    KVM_DOWN = "kvm_down"
    SILENT = "silent"
    INIT_FAIL = "init_fail"
    INIT_DELAY = "init_delay"
    #: An init that never answers (a hung libvirtd) until the fault is cleared; then it runs.
    INIT_HANG = "init_hang"
    #: A storage-domain connect that never answers (a hung mount) until the fault is cleared.
    CONNECT_HANG = "connect_hang"
    REPORT_DELAY = "report_delay"
    VERSION = "version"
    VM_FAIL = "vm_fail"
    #: A storage pool stopped while its storage is there: init (or a connect) starts it again.
    POOL_STOPPED = "pool_stopped"
    #: A libvirt network stopped while its device is there: init starts it again.
    NET_STOPPED = "net_stopped"


#: Fault kinds that name a storage domain or a network in ``target``.
TARGETED = frozenset({FaultKind.SD_DOWN, FaultKind.NIC_DOWN, FaultKind.POOL_STOPPED, FaultKind.NET_STOPPED})
#: Of those, the kinds whose target is a storage domain.
ON_STORAGE = frozenset({FaultKind.SD_DOWN, FaultKind.POOL_STOPPED})


#: Which optional parameters each fault kind takes; anything else given is refused.
PARAMETERS: dict[FaultKind, frozenset[str]] = {
    FaultKind.SD_DOWN: frozenset({"target"}),
    FaultKind.NIC_DOWN: frozenset({"target"}),
    FaultKind.KVM_DOWN: frozenset(),
    FaultKind.SILENT: frozenset(),
    FaultKind.INIT_FAIL: frozenset({"reason", "detail"}),
    FaultKind.INIT_DELAY: frozenset({"seconds"}),
    FaultKind.INIT_HANG: frozenset(),
    FaultKind.CONNECT_HANG: frozenset(),
    FaultKind.REPORT_DELAY: frozenset({"seconds"}),
    FaultKind.VERSION: frozenset({"version"}),
    FaultKind.VM_FAIL: frozenset({"detail"}),
    FaultKind.POOL_STOPPED: frozenset({"target"}),
    FaultKind.NET_STOPPED: frozenset({"target"}),
}


#: Faults that are on or off, and the ``Fault`` attribute each sets.
FLAGS: dict[FaultKind, str] = {
    FaultKind.KVM_DOWN: "kvm_down",
    FaultKind.SILENT: "silent",
    FaultKind.INIT_HANG: "init_hang",
    FaultKind.CONNECT_HANG: "connect_hang",
}


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault to inject, with the parameters its kind needs.

    ``target`` is the storage domain (sd_down, pool_stopped) or network (nic_down, net_stopped);
    ``seconds`` the delay (init_delay, report_delay); ``version`` the version the host reports;
    ``reason`` and ``detail`` what a failing init answers.
    """

    kind: FaultKind
    target: str | None = None
    reason: str | None = None
    detail: str | None = None
    seconds: float | None = None
    version: str | None = None

    def check(self) -> None:
        """Refuse missing, empty or unused parameters, naming the field.

        Raises:
            InvalidInput: naming ``target``, ``seconds``, ``version``, ``reason`` or ``detail``.
        """
        allowed = PARAMETERS[self.kind]
        given = {
            name: value
            for name, value in (
                ("target", self.target),
                ("reason", self.reason),
                ("detail", self.detail),
                ("seconds", self.seconds),
                ("version", self.version),
            )
            if value is not None
        }
        unused = sorted(given.keys() - allowed)
        if unused:
            raise InvalidInput(unused[0], f"is not a parameter of fault {self.kind}")
        for name in ("target", "version"):
            if name in allowed and not given.get(name):
                raise InvalidInput(name, f"is required for fault {self.kind}")
        if self.reason is not None and not self.reason:
            raise InvalidInput("reason", "must not be empty")
        if "seconds" in allowed:
            if self.seconds is None:
                raise InvalidInput("seconds", f"is required for fault {self.kind}")
            if not 0 <= self.seconds <= MAX_DELAY_S:
                raise InvalidInput("seconds", f"must be between 0 and {MAX_DELAY_S:.0f}")


@dataclass(slots=True)
class Fault:
    """The faults one simulated host carries now; the default is a healthy host."""

    sd_down: set[str] = field(default_factory=set)
    nic_down: set[str] = field(default_factory=set)
    kvm_down: bool = False
    version: str | None = None
    silent: bool = False
    init_fail: tuple[str, str] | None = None
    init_delay_s: float = 0.0
    init_hang: bool = False
    connect_hang: bool = False
    report_delay_s: float = 0.0
    #: VM launches fail here (something monitoring cannot see: a broken qemu, say).
    vm_fail: str | None = None
    #: Storage domains whose pool is stopped, and networks stopped: what init repairs.
    pool_stopped: set[str] = field(default_factory=set)
    net_stopped: set[str] = field(default_factory=set)

    @property
    def is_clear(self) -> bool:
        """True when the host carries no fault at all."""
        return not self.active()

    def active(self) -> dict[str, object]:
        """Return only the faults that are set, as JSON-ready data."""
        shown: dict[str, object] = {
            kind.value: sorted(self.targets(kind)) for kind in sorted(TARGETED) if self.targets(kind)
        }
        shown.update({flag: True for flag in FLAGS.values() if getattr(self, flag)})
        if self.version is not None:
            shown["version"] = self.version
        if self.init_fail is not None:
            shown["init_fail"] = {"reason": self.init_fail[0], "detail": self.init_fail[1]}
        if self.init_delay_s:
            shown["init_delay_s"] = self.init_delay_s
        if self.report_delay_s:
            shown["report_delay_s"] = self.report_delay_s
        if self.vm_fail is not None:
            shown["vm_fail"] = self.vm_fail
        return shown

    def targets(self, kind: FaultKind) -> set[str]:
        """The storage domains or networks a targeted fault kind is set on (the field of its name)."""
        found: set[str] = getattr(self, kind.value)
        return found

    def repair(self) -> list[str]:
        """Do what an init does: start every stopped pool and network; return what it started."""
        started = [f"storage_domain:{sd}" for sd in sorted(self.pool_stopped)]
        started += [f"network:{net}" for net in sorted(self.net_stopped)]
        self.pool_stopped.clear()
        self.net_stopped.clear()
        return started

    def apply(self, spec: FaultSpec) -> None:
        """Add one fault (already checked with ``FaultSpec.check``)."""
        kind = spec.kind
        if kind in TARGETED:
            if spec.target:
                self.targets(kind).add(spec.target)
        elif kind in FLAGS:
            setattr(self, FLAGS[kind], True)
        elif kind is FaultKind.INIT_FAIL:
            reason = spec.reason or DEFAULT_INIT_FAIL_REASON
            self.init_fail = (reason, spec.detail or DEFAULT_INIT_FAIL_DETAIL)
        elif kind is FaultKind.INIT_DELAY:
            self.init_delay_s = spec.seconds or 0.0
        elif kind is FaultKind.REPORT_DELAY:
            self.report_delay_s = spec.seconds or 0.0
        elif kind is FaultKind.VERSION:
            self.version = spec.version
        elif kind is FaultKind.VM_FAIL:
            self.vm_fail = spec.detail or "qemu-kvm: failed to start the VM"

    def clear(self, kind: FaultKind | None = None, target: str | None = None) -> None:
        """Clear one kind of fault (one target of it when given), or every fault."""
        for targeted in TARGETED:
            if kind is None or kind is targeted:
                _discard(self.targets(targeted), target)
        for flag_kind, flag in FLAGS.items():
            if kind is None or kind is flag_kind:
                setattr(self, flag, False)
        if kind is None or kind is FaultKind.INIT_FAIL:
            self.init_fail = None
        if kind is None or kind is FaultKind.INIT_DELAY:
            self.init_delay_s = 0.0
        if kind is None or kind is FaultKind.REPORT_DELAY:
            self.report_delay_s = 0.0
        if kind is None or kind is FaultKind.VERSION:
            self.version = None
        if kind is None or kind is FaultKind.VM_FAIL:
            self.vm_fail = None


def _discard(names: set[str], target: str | None) -> None:
    if target is None:
        names.clear()
    else:
        names.discard(target)
