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
            try:
                self._conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise HypervisorError(f"libvirt {self.uri}: {exc}") from exc
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
        """The host CPU features libvirt's capabilities list (beyond those its model implies)."""
        root = ET.fromstring(self._call("capabilities", self.connection().getCapabilities))  # noqa: S314
        features = root.find("host/cpu/features")
        named = {f.get("name", "") for f in root.findall("host/cpu/feature")}
        listed = {child.tag for child in features} if features is not None else set()
        return frozenset((named | listed) - {""})

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
