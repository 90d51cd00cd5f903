"""Simulated clusters and hosts: their healthy state, and the report their agent sends."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from harness.sim.faults import Fault
from harness.sim.record import format_time
from models.assessment import version_tuple

#: Reports each host remembers having served, for the record of the inits that follow them.
SERVED_KEPT = 8


@dataclass(slots=True)
class SimCluster:
    """A simulated cluster and the requirements its hosts must meet."""

    id: str
    required_networks: list[str] = field(default_factory=lambda: ["mgmt", "vmnet"])
    storage_domains: list[str] = field(default_factory=list)
    min_version: str = "4.5"
    cpu_flags: list[str] = field(default_factory=lambda: ["vmx"])

    def to_dict(self) -> dict[str, object]:
        """Render the cluster in the API's registration shape."""
        return {
            "id": self.id,
            "required_networks": list(self.required_networks),
            "storage_domains": list(self.storage_domains),
            "min_version": self.min_version,
            "cpu_flags": list(self.cpu_flags),
        }


@dataclass(slots=True)
class SimHost:
    """A simulated host: its healthy state, and the faults that override it."""

    id: str
    cluster: str
    kvm: bool = True
    version: str = "4.5.2"
    cpu_flags: list[str] = field(default_factory=lambda: ["vmx", "sse4_2"])
    networks: dict[str, bool] = field(default_factory=dict)
    storage_domains: dict[str, bool] = field(default_factory=dict)
    vms_running: int = 0
    mem_free_mb: int = 16_000
    fault: Fault = field(default_factory=Fault)
    #: The last reports served: (reported_at, "reason: detail" or None when clean).
    served: deque[tuple[datetime, str | None]] = field(default_factory=lambda: deque(maxlen=SERVED_KEPT))

    def serve(self, now: datetime, cluster: SimCluster) -> dict[str, object]:
        """Build the report served at ``now`` and remember what it showed.

        What init repairs (a stopped pool or network, marked ``repairable``) is not recorded as a
        problem: an automatic init on such a report is the repair, not a broken rule.
        """
        problem = self.problem(cluster, repairable=False)
        self.served.append((now, None if problem is None else f"{problem[0]}: {problem[1]}"))
        return self.report(now)

    def report(self, now: datetime) -> dict[str, object]:
        """Build the agent protocol v1 report, with faults applied (plus ``repairable``/``details``)."""
        fault = self.fault
        kvm = self.kvm and not fault.kvm_down
        down = self._broken_sds()
        stopped = {sd for sd in fault.pool_stopped if sd in self.storage_domains and sd not in down}
        nets_down = {n for n, up in self.networks.items() if not up or n in fault.nic_down}
        nets_stopped = {n for n in fault.net_stopped if n in self.networks and n not in nets_down}
        body: dict[str, object] = {
            "host_id": self.id,
            "reported_at": format_time(now),
            "kvm": kvm,
            "version": fault.version or self.version,
            "cpu_flags": list(self.cpu_flags),
            "networks": {n: n not in nets_down and n not in nets_stopped for n in self.networks},
            "storage_domains": {sd: sd not in down and sd not in stopped for sd in self.storage_domains},
            "vms_running": self.vms_running if kvm else 0,
            "mem_free_mb": self.mem_free_mb,
        }
        if stopped or nets_stopped:
            body["repairable"] = [f"storage_domain:{sd}" for sd in sorted(stopped)] + [
                f"network:{n}" for n in sorted(nets_stopped)
            ]
            body["details"] = {f"storage_domain:{sd}": f"pool of {sd} is inactive" for sd in stopped} | {
                f"network:{n}": f"libvirt network {n} is inactive" for n in nets_stopped
            }
        return body

    def _broken_sds(self) -> set[str]:
        return {sd for sd, ok in self.storage_domains.items() if not ok or sd in self.fault.sd_down}

    def problem(self, cluster: SimCluster, *, repairable: bool = True) -> tuple[str, str] | None:
        """Return the first (reason, detail) its monitoring would show, or None when healthy.

        ``repairable=False`` leaves out what init repairs (a stopped pool or network).
        """
        fault = self.fault
        if not self.kvm or fault.kvm_down:
            return "kvm_not_running", "kvm is not running"
        stopped = fault.pool_stopped if repairable else set()
        for sd in sorted(self.storage_domains):
            if not self.storage_domains[sd] or sd in fault.sd_down or sd in stopped:
                return "storage_domain_unreachable", f"storage domain {sd} unreachable"
        nets_stopped = fault.net_stopped if repairable else set()
        for net in sorted(self.networks):
            if not self.networks[net] or net in fault.nic_down or net in nets_stopped:
                return "network_interface_down", f"network {net} link down"
        version = fault.version or self.version
        if version_tuple(version) < version_tuple(cluster.min_version):
            detail = f"version {version} below cluster minimum {cluster.min_version}"
            return "version_incompatible", detail
        return None
