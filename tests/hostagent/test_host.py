"""Every probe and the init on libvirt's test driver, faults injected through libvirt and files."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from hostagent.host import HostView
from models.domain import Reason
from tests.support.hostagent import HostTree


def utcnow() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def view(tree: HostTree, libvirt_uri: str) -> Iterator[HostView]:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    hypervisor = LibvirtHypervisor(libvirt_uri)
    yield HostView(tree.config(), hypervisor, utcnow)
    hypervisor.close()


def conn(view: HostView) -> Any:
    """The view's own libvirt connection (a test:///file node's state is per connection)."""
    return view.hypervisor.connection()  # type: ignore[attr-defined]


def test_a_healthy_host_reports_every_probe(view: HostView) -> None:
    seen = view.observe()
    body = seen.body("h-001")
    assert body["kvm"] is True
    assert body["version"] == "4.5.2"
    assert {"vmx", "sse4_2"} <= set(body["cpu_flags"])
    assert body["networks"] == {"ovirtmgmt": True, "storage": True, "vmnet": True}
    assert body["storage_domains"] == {"sd-1": True, "sd-2": True}
    assert body["vms_running"] == 3
    assert body["mem_free_mb"] == 8000
    assert body["details"] == {}
    assert view.verdict(seen) is None


def test_vms_running_counts_active_domains(view: HostView) -> None:
    conn(view).lookupByName("vm-2").destroy()
    assert view.observe().vms_running == 2


def test_version_and_cpu_flags_can_come_from_libvirt(tree: HostTree, libvirt_uri: str) -> None:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    config = tree.config(
        version=None, probes={**tree.config().probes.model_dump(), "cpu_flags_from": "libvirt"}
    )
    hypervisor = LibvirtHypervisor(libvirt_uri)
    seen = HostView(config, hypervisor, utcnow).observe()
    lib = conn_version(hypervisor)
    assert seen.version == lib and seen.version.count(".") == 2
    assert "pae" in seen.cpu_flags  # the test driver's host CPU lists pae
    hypervisor.close()


def conn_version(hypervisor: Any) -> str:
    number = hypervisor.connection().getLibVersion()
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def test_kvm_is_down_without_the_device_or_without_libvirt(tree: HostTree, view: HostView) -> None:
    (tree.root / "dev" / "kvm").unlink()
    seen = view.observe()
    assert seen.kvm is False and "kvm is missing" in seen.problems["kvm"].detail
    problem = view.verdict(seen)
    assert problem is not None and problem.reason is Reason.KVM_NOT_RUNNING

    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    (tree.root / "dev" / "kvm").touch()
    dead = HostView(tree.config(), LibvirtHypervisor("test:///nonexistent/node.xml"), utcnow).observe()
    assert dead.kvm is False and "does not answer" in dead.problems["kvm"].detail


def test_a_destroyed_pool_and_a_removed_directory_make_a_domain_unreachable(
    tree: HostTree, view: HostView
) -> None:
    conn(view).storagePoolLookupByName("pool-sd1").destroy()
    shutil.rmtree(tree.pool_dir("sd2"))
    seen = view.observe()
    assert seen.storage_domains == {"sd-1": False, "sd-2": False}
    assert seen.problems["storage_domain:sd-1"].detail == "storage domain sd-1: pool pool-sd1 is inactive"
    assert "storage domain sd-2: pool pool-sd2:" in seen.problems["storage_domain:sd-2"].detail
    assert "No such file" in seen.problems["storage_domain:sd-2"].detail


def test_a_destroyed_network_and_a_down_interface_are_named(tree: HostTree, view: HostView) -> None:
    conn(view).networkLookupByName("vmnet").destroy()
    tree.set_link("eth1", "down", None)
    seen = view.observe()
    assert seen.networks == {"ovirtmgmt": True, "storage": False, "vmnet": False}
    assert seen.problems["network:vmnet"].reason is Reason.NETWORK_UNREACHABLE
    assert "libvirt network vmnet is inactive" in seen.problems["network:vmnet"].detail
    assert seen.problems["network:storage"].reason is Reason.NETWORK_INTERFACE_DOWN
    assert "interface eth1 is down" in seen.problems["network:storage"].detail


def test_init_starts_a_destroyed_pool_and_network(view: HostView) -> None:
    conn(view).storagePoolLookupByName("pool-sd1").destroy()
    conn(view).networkLookupByName("ovirtmgmt").destroy()
    assert view.initialize() is None
    assert conn(view).storagePoolLookupByName("pool-sd1").isActive() == 1
    assert conn(view).networkLookupByName("ovirtmgmt").isActive() == 1


def test_init_refreshes_an_active_pool_and_answers_ok(view: HostView) -> None:
    assert view.initialize() is None


def test_init_fails_naming_a_pool_whose_directory_is_gone(tree: HostTree, view: HostView) -> None:
    conn(view).storagePoolLookupByName("pool-sd2").destroy()
    shutil.rmtree(tree.pool_dir("sd2"))
    problem = view.initialize()
    assert problem is not None and problem.reason is Reason.STORAGE_DOMAIN_UNREACHABLE
    assert problem.subject == "sd-2" and "pool-sd2" in problem.detail and "No such file" in problem.detail


def test_init_fails_naming_a_pool_libvirt_does_not_know(tree: HostTree, libvirt_uri: str) -> None:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    config = tree.config(storage_domains={"sd-1": {"pool": "pool-sd1"}, "sd-9": {"pool": "pool-gone"}})
    problem = HostView(config, LibvirtHypervisor(libvirt_uri), utcnow).initialize()
    assert problem is not None and problem.reason is Reason.STORAGE_DOMAIN_UNREACHABLE
    assert problem.detail == (
        "storage domain sd-9: cannot start pool pool-gone: storage pool pool-gone is not defined in libvirt"
    )


def test_init_fails_naming_a_network_whose_interface_is_down(tree: HostTree, view: HostView) -> None:
    tree.set_link("eth0", "down", None)
    problem = view.initialize()
    assert problem is not None and problem.reason is Reason.NETWORK_INTERFACE_DOWN
    assert problem.subject == "ovirtmgmt" and "interface eth0 is down" in problem.detail


def test_init_fails_naming_a_libvirt_network_that_does_not_exist(tree: HostTree, libvirt_uri: str) -> None:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    config = tree.config(networks={"ovirtmgmt": {"libvirt_network": "nope"}})
    problem = HostView(config, LibvirtHypervisor(libvirt_uri), utcnow).initialize()
    assert problem is not None and problem.reason is Reason.NETWORK_UNREACHABLE
    assert "cannot start libvirt network nope" in problem.detail


def test_init_checks_cpu_flags_and_version_against_the_config(tree: HostTree, libvirt_uri: str) -> None:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    hypervisor = LibvirtHypervisor(libvirt_uri)
    cpu = HostView(tree.config(init={"cpu_flags": ["vmx", "svm"]}), hypervisor, utcnow).initialize()
    assert cpu is not None and cpu.reason is Reason.CPU_INCOMPATIBLE and "svm" in cpu.detail
    old = HostView(tree.config(init={"min_version": "4.6"}), hypervisor, utcnow).initialize()
    assert old is not None and old.reason is Reason.VERSION_INCOMPATIBLE


def test_init_only_requires_what_the_config_asks(tree: HostTree, libvirt_uri: str) -> None:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    shutil.rmtree(tree.pool_dir("sd2"))
    config = tree.config(init={"storage_domains": ["sd-1"], "networks": ["ovirtmgmt"]})
    assert HostView(config, LibvirtHypervisor(libvirt_uri), utcnow).initialize() is None


def test_connect_starts_one_domain_and_checks_it(tree: HostTree, view: HostView) -> None:
    conn(view).storagePoolLookupByName("pool-sd1").destroy()
    assert view.connect("sd-1") is None
    assert conn(view).storagePoolLookupByName("pool-sd1").isActive() == 1
    shutil.rmtree(tree.pool_dir("sd2"))
    problem = view.connect("sd-2")
    assert problem is not None and problem.subject == "sd-2"


def stuck_libvirt(uri: str, first_only: bool) -> Any:
    """libvirt whose daemon stops answering: a real connection whose domain listing blocks.

    Every listing blocks until ``release`` is set, or only the first one with ``first_only``.
    """
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    class StuckLibvirt(LibvirtHypervisor):
        release = threading.Event()
        calls = 0

        def running_domains(self) -> int:
            self.calls += 1
            if self.calls == 1 or not first_only:
                self.release.wait(30)
            return super().running_domains()

    return StuckLibvirt(uri)


def test_a_hung_libvirt_reads_kvm_down_in_time_and_costs_one_thread(tree: HostTree, libvirt_uri: str) -> None:
    hypervisor = stuck_libvirt(libvirt_uri, first_only=False)
    view = HostView(tree.config(libvirt={"uri": libvirt_uri, "timeout_s": 0.3}), hypervisor, utcnow)
    started = time.monotonic()
    seen = view.observe()
    assert time.monotonic() - started < 3
    assert seen.kvm is False and "does not answer within 0.3 s" in seen.problems["kvm"].detail
    assert seen.storage_domains == {"sd-1": False, "sd-2": False} and seen.networks["vmnet"] is False
    problem = view.verdict(seen)
    assert problem is not None and problem.reason is Reason.KVM_NOT_RUNNING
    assert view.observe().kvm is False and hypervisor.calls == 1  # the stuck call is not started again
    hypervisor.release.set()
    deadline = time.monotonic() + 10
    while not view.observe().kvm:
        assert time.monotonic() < deadline
    hypervisor.close()


def test_an_init_never_joins_a_look_a_report_began_before_it(tree: HostTree, libvirt_uri: str) -> None:
    hypervisor = stuck_libvirt(libvirt_uri, first_only=True)
    view = HostView(tree.config(libvirt={"uri": libvirt_uri, "timeout_s": 0.5}), hypervisor, utcnow)
    assert view.observe().kvm is False  # the report's look is stuck
    hypervisor.connection().storagePoolLookupByName("pool-sd1").destroy()
    assert view.initialize() is None  # the init looked afresh: pool started, host clean
    hypervisor.release.set()
    hypervisor.close()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 directory anyway")
def test_init_fails_naming_a_pool_whose_directory_is_unreadable(tree: HostTree, view: HostView) -> None:
    tree.pool_dir("sd1").chmod(0)
    try:
        problem = view.initialize()
    finally:
        tree.pool_dir("sd1").chmod(0o700)
    assert problem is not None and problem.reason is Reason.STORAGE_DOMAIN_UNREACHABLE
    assert problem.subject == "sd-1" and "Permission denied" in problem.detail
