"""The host as its agent sees it: a fresh report, and the init that brings it up.

The verdict on a fresh report is the product's own assessment (``models.assessment.assess``)
against the requirements in the agent's config, so the agent answers ``ok`` exactly when the
product would find the host clean; the agent adds the detail naming the object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

from hostagent.config import AgentConfig
from hostagent.hypervisor import Hypervisor, HypervisorError, ObjectState
from hostagent.probes import (
    Bounded,
    BoundedProber,
    check_interface,
    kvm_device_problem,
    read_cpu_flags,
    read_mem_available_mb,
)
from models.assessment import Problem, assess
from models.domain import Cluster, Reason, Report

log = logging.getLogger(__name__)

Lane = Literal["report", "init"]

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
    #: Keys of the problems this agent's own init repairs (a stopped pool or network, backed).
    repairable: frozenset[str] = frozenset()

    def body(self, host_id: str) -> dict[str, Any]:
        """The report's JSON fields (protocol v1 shape, ``details`` for people, ``repairable``)."""
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
            "repairable": sorted(self.repairable),
        }


#: The version a report gives while libvirt has never answered: the product reads it as below any
#: minimum (a version problem besides kvm_not_running), never as a malformed report.
UNKNOWN_VERSION = "unknown"

def _pool_backing(state: ObjectState) -> Path | None:
    """The path that proves a stopped pool's storage is there, or None when the agent cannot tell.

    A ``dir`` pool: its target directory (probed, bounded). An ``fs`` pool: its mount point, once
    every source device exists. Other pools (``netfs``, ``iscsi``, ``logical``, ``rbd``, …) are
    never marked repairable: only starting them would tell whether their storage answers.
    """
    if state.target is None:
        return None
    if state.kind == "dir":
        return state.target
    if state.kind == "fs" and state.sources and all(Path(d).exists() for d in state.sources):
        return state.target
    return None


def _ignore(_look: Observation) -> None:
    """The default ``on_look``: nobody keeps the looks."""


def _done(action: Callable[[], None]) -> bool:
    action()
    return True


def _key(problem: Problem) -> str:
    if problem.reason is Reason.KVM_NOT_RUNNING:
        return "kvm"
    kind = "storage_domain" if problem.reason is Reason.STORAGE_DOMAIN_UNREACHABLE else "network"
    return f"{kind}:{problem.subject}"


@dataclass(frozen=True, slots=True)
class LibvirtFacts:
    """What libvirt said in one look; a string in place of a state says why it could not."""

    version: str
    cpu_flags: frozenset[str]
    vms_running: int
    networks: dict[str, ObjectState | str]
    pools: dict[str, ObjectState | str]
    #: Why libvirt offers no kvm domain (None: it does, or the driver cannot tell).
    kvm_unavailable: str | None = None


def _state_of(query: Callable[[str], ObjectState], name: str) -> ObjectState | str:
    try:
        return query(name)
    except HypervisorError as exc:
        return str(exc)


class HostView:
    """Observes the host and runs its init, through the ``Hypervisor`` and the probe paths."""

    def __init__(self, config: AgentConfig, hypervisor: Hypervisor, clock: Callable[[], datetime]) -> None:
        self.config = config
        self.hypervisor = hypervisor
        self.clock = clock
        # Two lanes: a look for the init never joins a report's look begun before the init
        # changed the host (it would see a pool as it was before the init started it).
        self._probers = {lane: BoundedProber(config.probes.storage_timeout_s) for lane in ("report", "init")}
        self._libvirt: Bounded[str, LibvirtFacts | str] = Bounded(config.libvirt.timeout_s)
        #: Each libvirt call of an init, bounded the same way (a hung libvirtd never holds one).
        self._steps: Bounded[str, bool] = Bounded(config.libvirt.timeout_s)
        #: The version libvirt last told; what a report says while libvirt does not answer.
        self._last_version = UNKNOWN_VERSION
        #: Told of every fresh look an init or a connect takes (the report's snapshot keeps it).
        self.on_look: Callable[[Observation], None] = _ignore

    def observe(self, lane: Lane = "report") -> Observation:
        """Take a fresh look at the host (at most about the libvirt and storage timeouts)."""
        # A look is dated when it began: a look begun before an init changed the host is older
        # than the init's own look, and never replaces it in the report's snapshot.
        began = self.clock()
        kernel_flags = read_cpu_flags(self.config.probes.cpuinfo)
        cpuinfo_flags = kernel_flags if self.config.probes.cpu_flags_from == "cpuinfo" else None
        facts = self._ask_libvirt(lane, with_cpu_flags=cpuinfo_flags is None)
        problems: dict[str, Problem] = {}
        repairable: set[str] = set()
        kvm = self._kvm(facts, kernel_flags, problems)
        live = facts if isinstance(facts, LibvirtFacts) else None
        if live is not None:
            self._last_version = live.version
        return Observation(
            at=began,
            kvm=kvm,
            version=self.config.version or (live.version if live else self._last_version),
            cpu_flags=cpuinfo_flags if cpuinfo_flags is not None else live.cpu_flags if live else frozenset(),
            networks={
                name: self._network(name, facts, problems, repairable)
                for name in sorted(self.config.networks)
            },
            storage_domains=self._storage_domains(self._probers[lane], facts, problems, repairable),
            vms_running=live.vms_running if live else 0,
            mem_free_mb=read_mem_available_mb(self.config.probes.meminfo),
            problems=problems,
            repairable=frozenset(repairable),
        )

    def _ask_libvirt(self, lane: Lane, with_cpu_flags: bool) -> LibvirtFacts | str:
        """All the report needs from libvirt, in one bounded call (libvirtd may hang)."""
        try:
            answer = self._libvirt.run_all({lane: lambda: self._libvirt_facts(with_cpu_flags)})[lane]
        except Exception as exc:  # an answer libvirt's wrapper did not expect: kvm's problem, named
            log.warning("host %s: libvirt %s: %r", self.config.host_id, self.hypervisor.uri, exc)
            return f"libvirt {self.hypervisor.uri}: {type(exc).__name__}: {exc}"
        if answer is None:
            return f"libvirt {self.hypervisor.uri} does not answer within {self._libvirt.timeout_s:g} s"
        return answer

    def _libvirt_facts(self, with_cpu_flags: bool) -> LibvirtFacts | str:
        hv = self.hypervisor
        if not hv.is_alive():
            return f"libvirt {hv.uri} does not answer"
        try:
            version = hv.version()
            cpu_flags = hv.cpu_flags() if with_cpu_flags else frozenset()
            vms_running = hv.running_domains()
            kvm_unavailable = hv.kvm_unavailable()
        except HypervisorError as exc:
            return str(exc)
        wanted_nets = {n.libvirt_network for n in self.config.networks.values() if n.libvirt_network}
        wanted_pools = {d.pool for d in self.config.storage_domains.values()}
        return LibvirtFacts(
            version=version,
            cpu_flags=cpu_flags,
            vms_running=vms_running,
            networks={name: _state_of(hv.network, name) for name in sorted(wanted_nets)},
            pools={name: _state_of(hv.pool, name) for name in sorted(wanted_pools)},
            kvm_unavailable=kvm_unavailable,
        )

    def _kvm(
        self, facts: LibvirtFacts | str, cpu_flags: frozenset[str] | None, problems: dict[str, Problem]
    ) -> bool:
        """Whether QEMU can run KVM guests here, as VDSM checks it; the first reason why not."""
        probes = self.config.probes
        wanted = probes.cpu_virt_flags
        why = kvm_device_problem(probes.kvm_device, probes.qemu_user)
        if why is None and wanted and cpu_flags is not None and not cpu_flags & set(wanted):
            why = (
                f"the CPU has none of {', '.join(wanted)} in {probes.cpuinfo} "
                "(hardware virtualization off in the firmware?)"
            )
        if why is None and isinstance(facts, str):
            why = facts
        if why is None and isinstance(facts, LibvirtFacts) and facts.kvm_unavailable:
            why = facts.kvm_unavailable
        if why is not None:
            problems["kvm"] = Problem(Reason.KVM_NOT_RUNNING, why)
        return "kvm" not in problems

    def _network(
        self, name: str, facts: LibvirtFacts | str, problems: dict[str, Problem], repairable: set[str]
    ) -> bool:
        wanted = self.config.networks[name]
        problem: Problem | None = None
        if wanted.libvirt_network is not None:
            state = facts if isinstance(facts, str) else facts.networks[wanted.libvirt_network]
            if isinstance(state, str):
                problem = Problem(Reason.NETWORK_UNREACHABLE, f"network {name}: {state}", name)
            elif not state.active:
                seen = "is inactive" if state.defined else "is not defined"
                detail = f"network {name}: libvirt network {wanted.libvirt_network} {seen}"
                absent = [d for d in state.sources if not (self.config.probes.sys_class_net / d).exists()]
                if state.defined and not absent and name in self.config.required_networks():
                    repairable.add(f"network:{name}")  # an init starts it: what it needs is there
                elif absent:
                    detail += f"; its device {', '.join(absent)} is missing"
                problem = Problem(Reason.NETWORK_UNREACHABLE, detail, name)
        if problem is None and wanted.interface is not None:
            link = check_interface(self.config.probes.sys_class_net, wanted.interface)
            if not link.ok:
                missing = link.detail.endswith("not found")
                reason = Reason.NETWORK_UNREACHABLE if missing else Reason.NETWORK_INTERFACE_DOWN
                problem = Problem(reason, f"network {name}: {link.detail}", name)
        if problem is not None:
            problems[f"network:{name}"] = problem
        return problem is None

    def _storage_domains(
        self,
        prober: BoundedProber,
        facts: LibvirtFacts | str,
        problems: dict[str, Problem],
        repairable: set[str],
    ) -> dict[str, bool]:
        to_probe = {}
        stopped: dict[str, Path] = {}  # inactive dir pools: repairable when the target answers
        required = self.config.required_storage_domains()
        for sd, wanted in sorted(self.config.storage_domains.items()):
            state = facts if isinstance(facts, str) else facts.pools[wanted.pool]
            if isinstance(state, str):
                detail = f"storage domain {sd}: {state}"
            elif not state.defined or not state.active or state.target is None:
                if sd in required and state.defined and not state.active:
                    backing = _pool_backing(state)
                    if backing is not None:
                        stopped[sd] = backing
                seen = (
                    "is not defined"
                    if not state.defined
                    else "is inactive"
                    if not state.active
                    else "has no target"
                )
                detail = f"storage domain {sd}: pool {wanted.pool} {seen}"
            else:
                to_probe[sd] = state.target
                continue
            problems[f"storage_domain:{sd}"] = Problem(Reason.STORAGE_DOMAIN_UNREACHABLE, detail, sd)
        answers = prober.check_all([*to_probe.values(), *stopped.values()])
        for sd, path in to_probe.items():
            if not answers[path].ok:
                pool = self.config.storage_domains[sd].pool
                detail = f"storage domain {sd}: pool {pool}: {answers[path].detail}"
                problems[f"storage_domain:{sd}"] = Problem(Reason.STORAGE_DOMAIN_UNREACHABLE, detail, sd)
        for sd, path in stopped.items():
            key = f"storage_domain:{sd}"
            if answers[path].ok:
                repairable.add(key)  # an init starts the pool: its storage is there
            else:
                seen = f"{problems[key].detail}; {answers[path].detail}"
                problems[key] = replace(problems[key], detail=seen)
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
            if wanted is not None:
                what = f"network {name}: cannot start libvirt network {wanted}"
                failure = Problem(Reason.NETWORK_UNREACHABLE, what, name)
                self._attempt(
                    partial(self.hypervisor.start_network, wanted), failure, f"network:{name}", failures
                )
        self._test_delay()
        return self.verdict(self._look_after_init(), failures)

    def connect(self, sd: str) -> Problem | None:
        """Connect one storage domain (start or refresh its pool) and check that it answers."""
        failures: dict[str, Problem] = {}
        self._start_pool(sd, failures)
        self._test_delay()
        observation = self._look_after_init()
        if observation.storage_domains.get(sd):
            return None
        key = f"storage_domain:{sd}"
        return failures.get(key) or observation.problems[key]

    def _look_after_init(self) -> Observation:
        observation = self.observe("init")
        self.on_look(observation)
        return observation

    def _start_pool(self, sd: str, failures: dict[str, Problem]) -> None:
        pool = self.config.storage_domains[sd].pool
        failure = Problem(
            Reason.STORAGE_DOMAIN_UNREACHABLE, f"storage domain {sd}: cannot start pool {pool}", sd
        )
        self._attempt(partial(self.hypervisor.start_pool, pool), failure, f"storage_domain:{sd}", failures)

    def _attempt(
        self, action: Callable[[], None], failure: Problem, key: str, failures: dict[str, Problem]
    ) -> None:
        """Run one step of an init, bounded; on failure keep ``failure`` with libvirt's words appended."""
        try:
            answered = self._steps.run_all({key: partial(_done, action)})[key]
        except HypervisorError as exc:
            failures[key] = replace(failure, detail=f"{failure.detail}: {exc}")
        else:
            if answered is None:
                late = f"libvirt {self.hypervisor.uri} does not answer within {self._steps.timeout_s:g} s"
                failures[key] = replace(failure, detail=f"{failure.detail}: {late}")
        if key in failures:
            log.warning("host %s: %s", self.config.host_id, failures[key].detail)

    def _test_delay(self) -> None:
        if self.config.testing.init_delay_s:  # [testing] init_delay_s: slow inits on purpose
            time.sleep(self.config.testing.init_delay_s)
