"""The ``Hypervisor`` on libvirt (libvirt-python): any URI, ``test:///…`` included."""

from __future__ import annotations

import contextlib
import logging
import threading
import xml.etree.ElementTree as ET  # noqa: S405 - parses libvirt's own XML, not input from the network
from pathlib import Path
from typing import Any

import libvirt

from hostagent.hypervisor import HypervisorError, ObjectState

log = logging.getLogger(__name__)


def _silence(_ctx: object, _error: object) -> None:
    """Drop libvirt's default print of every error to stderr: each one is raised and handled."""


libvirt.registerErrorHandler(_silence, None)

#: Keepalive: a daemon that misses this many probes, one every interval, is dead to the client,
#: which then fails the calls stuck on it (a hung libvirtd frees the threads that wait for it).
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3

_EVENT_LOOP = threading.Lock()
_event_loop_started = False


def _ensure_event_loop() -> None:
    """Run libvirt's default event loop in a daemon thread (keepalive needs one); once a process."""
    global _event_loop_started  # noqa: PLW0603 - one loop per process, started on first use
    with _EVENT_LOOP:
        if _event_loop_started:
            return
        libvirt.virEventRegisterDefaultImpl()

        def loop() -> None:
            while True:
                libvirt.virEventRunDefaultImpl()

        threading.Thread(target=loop, name="libvirt events", daemon=True).start()
        _event_loop_started = True


#: libvirt's CPU feature names that the kernel (/proc/cpuinfo) spells otherwise, beyond the rule
#: (dots and dashes become underscores).
#: (Compared on a real libvirt 9.0 host: its expanded host CPU against /proc/cpuinfo.)
_CPUINFO_NAMES = {
    "pclmuldq": "pclmulqdq",
    "tsc-deadline": "tsc_deadline_timer",
    "avx512bitalg": "avx512_bitalg",
    "avx512vbmi2": "avx512_vbmi2",
    "avx512vnni": "avx512_vnni",
    "tsx-ldtrk": "tsxldtrk",
    "invtsc": "nonstop_tsc",
}


def cpuinfo_spelling(name: str) -> str:
    """A libvirt CPU feature name as /proc/cpuinfo spells it (``sse4.2`` -> ``sse4_2``)."""
    return _CPUINFO_NAMES.get(name, name.replace(".", "_").replace("-", "_"))


def network_devices(xml: ET.Element) -> tuple[str, ...]:
    """The host interfaces a libvirt network needs to start: what it forwards to, if anything.

    An isolated or NAT network makes its own bridge (nothing outside it); ``forward dev=`` and
    ``forward/interface`` name host devices; ``forward mode="bridge"`` uses an existing bridge.
    """
    forward = xml.find("forward")
    if forward is None:
        return ()
    names = [forward.get("dev", "")] + [i.get("dev", "") for i in forward.findall("interface")]
    bridge = xml.find("bridge")
    if forward.get("mode") == "bridge" and bridge is not None:
        names.append(bridge.get("name", ""))
    return tuple(sorted({n for n in names if n}))


class LibvirtHypervisor:
    """One libvirt connection, opened on first use and reopened when it dies."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._lock = threading.Lock()
        self._conn: Any = None

    def connection(self) -> Any:
        """The open ``virConnect`` (tests inject faults through it).

        Raises:
            HypervisorError: libvirt could not be reached.
        """
        with self._lock:
            if self._conn is not None:
                try:
                    if self._conn.isAlive() == 1:
                        return self._conn
                except libvirt.libvirtError:
                    pass
                log.warning("libvirt connection %s lost; reconnecting", self.uri)
                self._conn = None
            _ensure_event_loop()
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise HypervisorError(f"libvirt {self.uri}: {exc}") from exc
            try:
                self._conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
            except libvirt.libvirtError as exc:  # drivers without a daemon (test:///) have none
                log.debug("libvirt %s: no keepalive: %s", self.uri, exc)
            return self._conn

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(libvirt.libvirtError):
                    self._conn.close()
                self._conn = None

    def is_alive(self) -> bool:
        """True when libvirt answers."""
        try:
            self.connection()
        except HypervisorError:
            return False
        return True

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise HypervisorError(f"{what}: {exc.get_error_message() or exc}") from exc

    def version(self) -> str:
        """libvirt's version, e.g. ``9.0.0``."""
        number = int(self._call("libvirt version", self.connection().getLibVersion))
        return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"

    def cpu_flags(self) -> frozenset[str]:
        """The host CPU's features, those its model implies included, in /proc/cpuinfo spelling.

        libvirt lists a host CPU as a model plus extra features; expanding it
        (``baselineCPU`` with ``EXPAND_FEATURES``) names every feature, which libvirt spells its
        own way (``sse4.2``, ``pclmuldq``): clusters use the kernel's (``sse4_2``, ``pclmulqdq``).
        """
        conn = self.connection()
        caps = self._call("capabilities", conn.getCapabilities)
        root = ET.fromstring(caps)  # noqa: S314
        cpu = root.find("host/cpu")
        names: set[str] = set()
        if cpu is not None:
            names = {f.get("name", "") for f in cpu.findall("feature")}
            try:
                expanded = conn.baselineCPU(
                    [ET.tostring(cpu, encoding="unicode")], libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES
                )
            except libvirt.libvirtError as exc:  # drivers without a CPU map (test:///): as listed
                log.debug("libvirt %s: cannot expand the host CPU: %s", self.uri, exc)
            else:
                names |= {
                    f.get("name", "")
                    for f in ET.fromstring(expanded).findall("feature")  # noqa: S314
                    if f.get("policy") != "disable"
                }
        features = root.find("host/cpu/features")  # the test driver's form
        if features is not None:
            names |= {child.tag for child in features}
        return frozenset(cpuinfo_spelling(n) for n in names if n)

    def kvm_unavailable(self) -> str | None:
        """Why libvirt's domain capabilities offer no kvm domain; None when they do or cannot tell."""
        try:
            xml = self.connection().getDomainCapabilities(None, None, None, "kvm", 0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_SUPPORT:
                return None  # a driver without domain capabilities (test:///)
            return f"libvirt offers no kvm domain: {exc.get_error_message() or exc}"
        if ET.fromstring(xml).findtext("domain") != "kvm":  # noqa: S314
            return "libvirt's domain capabilities offer no kvm domain"
        return None

    def running_domains(self) -> int:
        """How many libvirt domains are active."""
        conn = self.connection()
        return len(self._call("domains", conn.listAllDomains, libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE))

    def _lookup(self, kind: str, lookup: Any, name: str, missing_code: int) -> Any:
        try:
            return lookup(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == missing_code:
                return None
            raise HypervisorError(f"{kind} {name}: {exc.get_error_message() or exc}") from exc

    def _network(self, name: str) -> Any:
        conn = self.connection()
        return self._lookup("network", conn.networkLookupByName, name, libvirt.VIR_ERR_NO_NETWORK)

    def _pool(self, name: str) -> Any:
        conn = self.connection()
        return self._lookup(
            "storage pool", conn.storagePoolLookupByName, name, libvirt.VIR_ERR_NO_STORAGE_POOL
        )

    def network(self, name: str) -> ObjectState:
        """Whether network ``name`` is defined and active, and the host devices it forwards to."""
        net = self._network(name)
        if net is None:
            return ObjectState(defined=False)
        active = self._call(f"network {name}", net.isActive) == 1
        xml = ET.fromstring(self._call(f"network {name}", net.XMLDesc, 0))  # noqa: S314
        return ObjectState(defined=True, active=active, sources=network_devices(xml))

    def pool(self, name: str) -> ObjectState:
        """Whether pool ``name`` is defined and active, and its target path."""
        pool = self._pool(name)
        if pool is None:
            return ObjectState(defined=False)
        active = self._call(f"storage pool {name}", pool.isActive) == 1
        xml = ET.fromstring(self._call(f"storage pool {name}", pool.XMLDesc, 0))  # noqa: S314
        path = xml.findtext("target/path")
        devices = tuple(d.get("path", "") for d in xml.findall("source/device") if d.get("path"))
        return ObjectState(
            defined=True,
            active=active,
            target=Path(path) if path else None,
            kind=xml.get("type"),
            sources=devices,
        )

    def start_network(self, name: str) -> None:
        """Start network ``name`` unless it is active."""
        net = self._network(name)
        if net is None:
            raise HypervisorError(f"network {name} is not defined in libvirt")
        if self._call(f"network {name}", net.isActive) != 1:
            log.info("starting libvirt network %s", name)
            self._call(f"start network {name}", net.create)

    def start_pool(self, name: str) -> None:
        """Start pool ``name`` unless it is active; refresh it when it is."""
        pool = self._pool(name)
        if pool is None:
            raise HypervisorError(f"storage pool {name} is not defined in libvirt")
        if self._call(f"storage pool {name}", pool.isActive) == 1:
            self._call(f"refresh storage pool {name}", pool.refresh, 0)
        else:
            log.info("starting libvirt storage pool %s", name)
            self._call(f"start storage pool {name}", pool.create, 0)
