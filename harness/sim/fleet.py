"""Simulated fleet state: clusters, hosts, their faults, and what their agents answer (no HTTP)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from harness.sim.calls import Answer, FencedCalls
from harness.sim.faults import ON_STORAGE, TARGETED, FaultKind, FaultSpec
from harness.sim.hosts import SimCluster, SimHost
from harness.sim.record import ConnectCall, InitCall
from models.errors import InvalidInput, NotFound

__all__ = ["Answer", "Clock", "Fleet", "SimCluster", "SimHost", "utc_now"]

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


#: Agent protocol versions a simulated host can speak.
PROTOCOLS = (1, 2)
#: Memory a simulated VM takes from its host.
VM_MEMORY_MB = 1024


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class Fleet:
    """Every simulated host and cluster, their faults, and the record of agent calls.

    All mutation happens on the server's event loop, so no lock is needed; the delays are
    ``asyncio.sleep``. Agents speak ``protocol`` (2 by default; 1 for compatibility tests), each
    host on its own if switched. Once served from another thread, change it only through
    ``/control``. The storage-domain index is built once, so keep hosts' domains fixed.
    """

    def __init__(
        self,
        clusters: Iterable[SimCluster],
        hosts: Iterable[SimHost],
        clock: Clock = utc_now,
        protocol: int = 2,
    ) -> None:
        self.clusters: dict[str, SimCluster] = {c.id: c for c in clusters}
        self.hosts: dict[str, SimHost] = {}
        self._clock = clock
        self._by_sd: dict[str, list[str]] = {}
        self._networks: set[str] = set()
        for cluster in self.clusters.values():
            self._networks.update(cluster.required_networks)
        for host in hosts:
            if host.cluster not in self.clusters:
                raise InvalidInput("cluster", f"host {host.id} names unknown cluster {host.cluster}")
            self.hosts[host.id] = host
            self._networks.update(host.networks)
            for sd in host.storage_domains:
                self._by_sd.setdefault(sd, []).append(host.id)
        _check_protocol(protocol)
        self.default_protocol = protocol
        self._protocols: dict[str, int] = {}
        self.calls = FencedCalls(clock)

    @property
    def inits(self) -> list[InitCall]:
        """Every init call the fleet's agents received, in order."""
        return self.calls.inits

    @property
    def connects(self) -> list[ConnectCall]:
        """Every storage-domain connect call the fleet's agents received, in order."""
        return self.calls.connects

    @classmethod
    def generate(
        cls,
        hosts: int,
        clusters: int,
        storage_domains_per_cluster: int = 2,
        shared_storage_domain: bool = False,
        clock: Clock = utc_now,
        protocol: int = 2,
    ) -> Fleet:
        """Build a deterministic healthy fleet: clusters c-1..c-M, hosts h-0001.. round-robin.

        Ids do not depend on the fleet's size: host 12345 is ``h-12345``.
        """
        if hosts < 0:
            raise InvalidInput("hosts", "must not be negative")
        if clusters < 1:
            raise InvalidInput("clusters", "must be at least 1")
        if storage_domains_per_cluster < 0:
            raise InvalidInput("storage_domains_per_cluster", "must not be negative")
        made: list[SimCluster] = []
        for c in range(1, clusters + 1):
            cid = f"c-{c}"
            sds = [f"sd-{cid}-{n}" for n in range(1, storage_domains_per_cluster + 1)]
            if shared_storage_domain:
                sds.append("sd-shared")
            made.append(SimCluster(id=cid, storage_domains=sds))
        sim_hosts: list[SimHost] = []
        for i in range(1, hosts + 1):
            cluster = made[(i - 1) % clusters]
            sim_hosts.append(
                SimHost(
                    id=f"h-{i:04d}",
                    cluster=cluster.id,
                    networks=dict.fromkeys(cluster.required_networks, True),
                    storage_domains=dict.fromkeys(cluster.storage_domains, True),
                    vms_running=(i * 7) % 13,
                    mem_free_mb=4_096 + (i * 7_919) % 60_000,
                )
            )
        return cls(made, sim_hosts, clock=clock, protocol=protocol)

    def host(self, host_id: str) -> SimHost:
        """Return one host.

        Raises:
            NotFound: when no such host is simulated.
        """
        try:
            return self.hosts[host_id]
        except KeyError:
            raise NotFound("host", host_id) from None

    def select(
        self,
        hosts: Iterable[str] | None = None,
        cluster: str | None = None,
        storage_domain: str | None = None,
        all_hosts: bool = False,
    ) -> list[str]:
        """Return the ids of hosts matching every selector given (all hosts with ``all_hosts``).

        Raises:
            InvalidInput: naming the selector that names an unknown object, or ``hosts`` when
                nothing was selected and ``all_hosts`` is false.
        """
        if hosts is None and cluster is None and storage_domain is None and not all_hosts:
            raise InvalidInput("hosts", "give hosts, cluster or storage_domain, or set all")
        if hosts is not None:
            ids = list(dict.fromkeys(hosts))
            unknown = [h for h in ids if h not in self.hosts]
            if unknown:
                raise InvalidInput("hosts", "unknown host(s): " + ", ".join(unknown[:5]))
        elif storage_domain is not None:
            ids = list(self._by_sd.get(storage_domain, []))
        else:
            ids = list(self.hosts)
        if cluster is not None:
            if cluster not in self.clusters:
                raise InvalidInput("cluster", f"unknown cluster {cluster}")
            ids = [h for h in ids if self.hosts[h].cluster == cluster]
        if storage_domain is not None:
            if storage_domain not in self._by_sd:
                raise InvalidInput("storage_domain", f"unknown storage domain {storage_domain}")
            ids = [h for h in ids if storage_domain in self.hosts[h].storage_domains]
        return ids

    def inject(self, spec: FaultSpec, host_ids: Iterable[str]) -> list[str]:
        """Give every named host one fault; return their ids.

        Raises:
            InvalidInput: naming the parameter that is missing, unused or unknown.
        """
        spec.check()
        if spec.kind in ON_STORAGE and spec.target not in self._by_sd:
            raise InvalidInput("target", f"unknown storage domain {spec.target}")
        if spec.kind in TARGETED - ON_STORAGE and spec.target not in self._networks:
            raise InvalidInput("target", f"unknown network {spec.target}")
        ids = list(host_ids)
        for host_id in ids:
            self.host(host_id).fault.apply(spec)
        logger.info("injected fault %s %s on %d host(s)", spec.kind, spec.target or "", len(ids))
        return ids

    def clear(
        self, host_ids: Iterable[str], kind: FaultKind | None = None, target: str | None = None
    ) -> list[str]:
        """Clear faults (one kind, one target of it, or all) on the named hosts; return their ids.

        Raises:
            InvalidInput: naming ``target`` when it is given without a kind that takes one.
        """
        if target is not None and kind not in TARGETED:
            raise InvalidInput("target", "only faults on a storage domain or a network take a target")
        ids = list(host_ids)
        for host_id in ids:
            self.host(host_id).fault.clear(kind, target)
        logger.info("cleared fault %s on %d host(s)", kind or "all", len(ids))
        return ids

    def report(self, host_id: str) -> dict[str, object]:
        """Return one host's monitoring report as its agent would send it now (v1 or v2)."""
        host = self.host(host_id)
        body = host.serve(self._clock(), self.clusters[host.cluster])
        if self.is_v2(host_id):
            running = self.calls.running(host_id)
            body["protocol"] = 2
            body["init"] = None if running is None else running.running_body()
            body["agent"] = self.calls.agent_body(host_id)
        return body

    def protocol(self, host_id: str) -> int:
        """Return the agent protocol (1 or 2) the host's agent speaks."""
        return self._protocols.get(host_id, self.default_protocol)

    def set_protocol(self, host_ids: Iterable[str], protocol: int) -> list[str]:
        """Make the named hosts' agents speak protocol 1 or 2; return their ids.

        Raises:
            InvalidInput: naming ``protocol`` when it is neither 1 nor 2.
        """
        _check_protocol(protocol)
        ids = list(host_ids)
        for host_id in ids:
            self.host(host_id)
            self._protocols[host_id] = protocol
        logger.info("%d host(s) now speak agent protocol v%d", len(ids), protocol)
        return ids

    def is_v2(self, host_id: str) -> bool:
        """True when the host's agent speaks protocol v2 (busy, status, /fence, idempotence)."""
        return self.protocol(host_id) >= 2

    def highest_fence(self, host_id: str) -> int:
        """Return the highest init fence the host's agent has accepted (0 when none)."""
        return self.calls.highest(host_id)

    def raise_fence(self, host_id: str, fence: int) -> int:
        """Raise the highest init fence the host's agent accepts (never lower it); return it."""
        self.host(host_id)
        highest = self.calls.raise_fence(host_id, fence)
        logger.info("host %s: fence raised to %d (asked %d)", host_id, highest, fence)
        return highest

    async def init(self, host_id: str, fence: int, activation_id: str, wait: bool = True) -> Answer:
        """Run an init as the host's agent would, recording the call.

        ``wait=False`` (v2 ``Prefer: respond-async``) answers at once while the init runs.

        Raises:
            NotFound: when no such host is simulated.
            StaleFence: when ``fence`` is lower than the highest accepted for this host.
            InitBusy: (v2) when another init runs on this host.
        """
        host = self.host(host_id)
        cluster = self.clusters[host.cluster]

        def make_call(now: datetime) -> InitCall:
            # Whether monitoring could see a problem when the init arrived: the bar is zero such
            # inits from automatic activations.
            # What init repairs (a stopped pool or network) is not such a problem.
            faulted = host.problem(cluster, repairable=False) is not None or host.fault.silent
            return InitCall(
                host_id, fence, activation_id, now, faulted=faulted, reports_before=list(host.served)
            )

        async def work() -> tuple[str, str] | None:
            await _hang_while(lambda: host.fault.init_hang)
            if host.fault.init_delay_s > 0:
                await asyncio.sleep(host.fault.init_delay_s)
            if host.fault.init_fail:
                return host.fault.init_fail  # an init that repairs nothing
            started = host.fault.repair()
            if started:
                logger.info("host %s: init started %s", host_id, ", ".join(started))
            return host.problem(cluster)

        v2 = self.is_v2(host_id)
        return await self.calls.submit(
            self.calls.inits, (host_id,), fence, activation_id, make_call, work,
            exclusive=v2, wait=wait or not v2,
        )

    def start_vm(self, host_id: str, vm_id: str) -> dict[str, object]:
        """Start a VM on a host: it fails on a host with a vm_fail fault or a visible problem."""
        host = self.host(host_id)
        problem = host.problem(self.clusters[host.cluster])
        if host.fault.vm_fail is not None or problem is not None:
            error = host.fault.vm_fail or (problem[1] if problem else "cannot start VMs")
            logger.debug("host %s: VM %s failed: %s", host_id, vm_id, error)
            return {"ok": False, "error": error}
        host.vms_running += 1
        host.mem_free_mb = max(0, host.mem_free_mb - VM_MEMORY_MB)
        return {"ok": True}

    async def connect(
        self, host_id: str, sd_id: str, fence: int, activation_id: str | None = None, wait: bool = True
    ) -> Answer:
        """Connect the host to a storage domain as its agent would, recording the call.

        Raises:
            NotFound: when no such host, or the domain is not attached to the host.
            StaleFence: when ``fence`` is lower than the highest accepted for this domain.
            InitBusy: (v2) when another connect of this domain runs on this host.
        """
        host = self.host(host_id)
        if sd_id not in host.storage_domains:
            raise NotFound("storage domain", sd_id)
        # A v1 caller sends no activation id: each call is then a call of its own.
        act = activation_id or f"anonymous-{uuid.uuid4().hex}"

        def make_call(now: datetime) -> ConnectCall:
            return ConnectCall(host_id, sd_id, fence, now, activation_id=activation_id)

        async def work() -> tuple[str, str] | None:
            await _hang_while(lambda: host.fault.connect_hang)
            if host.fault.init_delay_s > 0:
                await asyncio.sleep(host.fault.init_delay_s)
            if host.storage_domains[sd_id] and sd_id not in host.fault.sd_down:
                host.fault.pool_stopped.discard(sd_id)  # a connect starts a stopped pool
                return None
            return "storage_domain_unreachable", f"storage domain {sd_id} unreachable from host {host_id}"

        v2 = self.is_v2(host_id)
        return await self.calls.submit(
            self.calls.connects, (host_id, sd_id), fence, act, make_call, work,
            exclusive=v2, wait=wait or not v2,
        )

    def overlaps(self) -> dict[str, list[tuple[InitCall, InitCall]]]:
        """Return, per host, the pairs of accepted init calls that ran at the same time."""
        return self.calls.overlaps()

    def connect_overlaps(self) -> dict[str, list[tuple[ConnectCall, ConnectCall]]]:
        """Return, per storage domain, the connect pairs two actors ran at the same time."""
        return self.calls.connect_overlaps()

    def reset_record(self, fences: bool = False) -> None:
        """Forget recorded calls (and, with ``fences``, the highest fences accepted)."""
        self.calls.reset(fences)


#: How often a hung init or connect looks whether its fault was cleared.
HANG_POLL_S = 0.05


async def _hang_while(is_hung: Callable[[], bool]) -> None:
    """Answer nothing while ``is_hung`` (a hung libvirtd or mount); go on once it is cleared."""
    while is_hung():
        await asyncio.sleep(HANG_POLL_S)


def _check_protocol(protocol: int) -> None:
    if protocol not in PROTOCOLS:
        raise InvalidInput("protocol", "must be 1 or 2")
