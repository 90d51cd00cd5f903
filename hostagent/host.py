"""The host as its agent sees it: a fresh report, and the init that brings it up.

The verdict on a fresh report is the product's own assessment (``models.assessment.assess``)
against the requirements in the agent's config, so the agent answers ``ok`` exactly when the
product would find the host clean; the agent adds the detail naming the object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hostagent.config import AgentConfig
from hostagent.hypervisor import Hypervisor, HypervisorError
from hostagent.probes import (
    BoundedProber,
    check_interface,
    has_kvm_device,
    read_cpu_flags,
    read_mem_available_mb,
)
from models.assessment import Problem, assess
from models.domain import Cluster, Reason, Report

log = logging.getLogger(__name__)

#: The verdict's report is fresh by construction; any age limit above zero will do.
_FRESH_S = 3600.0


@dataclass(frozen=True, slots=True)
class Observation:
    """One look at the host: the report's fields and, per failing object, what is wrong."""

    at: datetime
    kvm: bool
    version: str
    cpu_flags: frozenset[str]
    networks: dict[str, bool]
    storage_domains: dict[str, bool]
    vms_running: int
    mem_free_mb: int
    problems: dict[str, Problem] = field(default_factory=dict)

    def body(self, host_id: str) -> dict[str, Any]:
        """The report's JSON fields (protocol v1 shape plus ``details`` for people)."""
        return {
            "host_id": host_id,
            "reported_at": self.at.isoformat().replace("+00:00", "Z"),
            "kvm": self.kvm,
            "version": self.version,
            "cpu_flags": sorted(self.cpu_flags),
            "networks": self.networks,
            "storage_domains": self.storage_domains,
            "vms_running": self.vms_running,
            "mem_free_mb": self.mem_free_mb,
            "details": {key: p.detail for key, p in sorted(self.problems.items())},
        }


def _key(problem: Problem) -> str:
    if problem.reason is Reason.KVM_NOT_RUNNING:
        return "kvm"
    kind = "storage_domain" if problem.reason is Reason.STORAGE_DOMAIN_UNREACHABLE else "network"
    return f"{kind}:{problem.subject}"


class HostView:
    """Observes the host and runs its init, through the ``Hypervisor`` and the probe paths."""

    def __init__(self, config: AgentConfig, hypervisor: Hypervisor, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.hypervisor = hypervisor
        self.clock = clock
        self.prober = BoundedProber(config.probes.storage_timeout_s)

    def observe(self) -> Observation:
        """Take a fresh look at the host."""
        problems: dict[str, Problem] = {}
        kvm = self._kvm(problems)
        networks = {name: self._network(name, problems) for name in sorted(self.config.networks)}
        return Observation(
            at=self.clock(),
            kvm=kvm,
            version=self._version(kvm),
            cpu_flags=self._cpu_flags(kvm),
            networks=networks,
            storage_domains=self._storage_domains(problems),
            vms_running=self._vms_running(kvm),
            mem_free_mb=read_mem_available_mb(self.config.probes.meminfo),
            problems=problems,
        )

    def _kvm(self, problems: dict[str, Problem]) -> bool:
        device = self.config.probes.kvm_device
        if not has_kvm_device(device):
            problems["kvm"] = Problem(Reason.KVM_NOT_RUNNING, f"{device} is missing (kvm module not loaded?)")
        elif not self.hypervisor.is_alive():
            problems["kvm"] = Problem(
                Reason.KVM_NOT_RUNNING, f"libvirt {self.hypervisor.uri} does not answer"
            )
        return "kvm" not in problems

    def _version(self, alive: bool) -> str:
        if self.config.version:
            return self.config.version
        try:
            return self.hypervisor.version() if alive else ""
        except HypervisorError:
            return ""

    def _cpu_flags(self, alive: bool) -> frozenset[str]:
        if self.config.probes.cpu_flags_from == "cpuinfo":
            flags = read_cpu_flags(self.config.probes.cpuinfo)
            if flags is not None:
                return flags
        try:
            return self.hypervisor.cpu_flags() if alive else frozenset()
        except HypervisorError:
            return frozenset()

    def _vms_running(self, alive: bool) -> int:
        try:
            return self.hypervisor.running_domains() if alive else 0
        except HypervisorError:
            return 0

    def _network(self, name: str, problems: dict[str, Problem]) -> bool:
        wanted = self.config.networks[name]
        problem: Problem | None = None
        if wanted.libvirt_network is not None:
            try:
                state = self.hypervisor.network(wanted.libvirt_network)
                if not state.active:
                    seen = "is inactive" if state.defined else "is not defined"
                    detail = f"network {name}: libvirt network {wanted.libvirt_network} {seen}"
                    problem = Problem(Reason.NETWORK_UNREACHABLE, detail, name)
            except HypervisorError as exc:
                problem = Problem(Reason.NETWORK_UNREACHABLE, f"network {name}: {exc}", name)
        if problem is None and wanted.interface is not None:
            link = check_interface(self.config.probes.sys_class_net, wanted.interface)
            if not link.ok:
                missing = link.detail.endswith("not found")
                reason = Reason.NETWORK_UNREACHABLE if missing else Reason.NETWORK_INTERFACE_DOWN
                problem = Problem(reason, f"network {name}: {link.detail}", name)
        if problem is not None:
            problems[f"network:{name}"] = problem
        return problem is None

    def _storage_domains(self, problems: dict[str, Problem]) -> dict[str, bool]:
        to_probe = {}
        for sd, wanted in sorted(self.config.storage_domains.items()):
            detail: str | None = None
            try:
                state = self.hypervisor.pool(wanted.pool)
                if not state.active or state.target is None:
                    seen = (
                        "has no target path"
                        if state.active
                        else "is inactive"
                        if state.defined
                        else "is not defined"
                    )
                    detail = f"storage domain {sd}: pool {wanted.pool} {seen}"
                else:
                    to_probe[sd] = state.target
            except HypervisorError as exc:
                detail = f"storage domain {sd}: {exc}"
            if detail is not None:
                problems[f"storage_domain:{sd}"] = Problem(Reason.STORAGE_DOMAIN_UNREACHABLE, detail, sd)
        answers = self.prober.check_all(to_probe.values())
        for sd, path in to_probe.items():
            if not answers[path].ok:
                pool = self.config.storage_domains[sd].pool
                detail = f"storage domain {sd}: pool {pool}: {answers[path].detail}"
                problems[f"storage_domain:{sd}"] = Problem(Reason.STORAGE_DOMAIN_UNREACHABLE, detail, sd)
        return {sd: f"storage_domain:{sd}" not in problems for sd in sorted(self.config.storage_domains)}

    def verdict(self, observation: Observation, failures: dict[str, Problem] | None = None) -> Problem | None:
        """The first problem the product's assessment finds in ``observation``, named precisely."""
        report = Report(
            host_id=self.config.host_id,
            reported_at=observation.at,
            kvm=observation.kvm,
            version=observation.version,
            cpu_flags=observation.cpu_flags,
            networks=observation.networks,
            storage_domains=observation.storage_domains,
        )
        cluster = Cluster(
            id="this-host",
            required_networks=self.config.required_networks(),
            storage_domains=self.config.required_storage_domains(),
            min_version=self.config.init.min_version,
            cpu_flags=frozenset(self.config.init.cpu_flags),
        )
        found = assess(report, cluster, observation.at, _FRESH_S).primary
        if found is None:
            return None
        key = _key(found)
        return (failures or {}).get(key) or observation.problems.get(key) or found

    def initialize(self) -> Problem | None:
        """Connect every required storage domain, bring up every required network, then judge.

        Returns None when a fresh report is clean, else the problem that keeps the host out.
        """
        failures: dict[str, Problem] = {}
        for sd in sorted(self.config.required_storage_domains()):
            self._start_pool(sd, failures)
        for name in sorted(self.config.required_networks()):
            wanted = self.config.networks[name].libvirt_network
            if wanted is None:
                continue
            try:
                self.hypervisor.start_network(wanted)
            except HypervisorError as exc:
                detail = f"network {name}: cannot start libvirt network {wanted}: {exc}"
                failures[f"network:{name}"] = Problem(Reason.NETWORK_UNREACHABLE, detail, name)
        self._test_delay()
        return self.verdict(self.observe(), failures)

    def connect(self, sd: str) -> Problem | None:
        """Connect one storage domain (start or refresh its pool) and check that it answers."""
        failures: dict[str, Problem] = {}
        self._start_pool(sd, failures)
        self._test_delay()
        observation = self.observe()
        if observation.storage_domains.get(sd):
            return None
        key = f"storage_domain:{sd}"
        return failures.get(key) or observation.problems[key]

    def _start_pool(self, sd: str, failures: dict[str, Problem]) -> None:
        pool = self.config.storage_domains[sd].pool
        try:
            self.hypervisor.start_pool(pool)
        except HypervisorError as exc:
            detail = f"storage domain {sd}: cannot start pool {pool}: {exc}"
            failures[f"storage_domain:{sd}"] = Problem(Reason.STORAGE_DOMAIN_UNREACHABLE, detail, sd)

    def _test_delay(self) -> None:
        if self.config.testing.init_delay_s:  # [testing] init_delay_s: slow inits on purpose
            time.sleep(self.config.testing.init_delay_s)
