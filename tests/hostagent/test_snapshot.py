"""Reports from a snapshot, repairable marks, and an init whose every libvirt call is bounded."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hostagent.host import UNKNOWN_VERSION, HostView
from hostagent.snapshot import Snapshots
from models.assessment import assess
from models.domain import Cluster, Reason
from models.report import parse_report
from tests.support.hostagent import HostTree

CLUSTER = Cluster(
    "c-1", frozenset({"ovirtmgmt", "vmnet"}), frozenset({"sd-1", "sd-2"}), "4.5", frozenset({"vmx"})
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def libvirt_view(tree: HostTree, uri: str, **config: Any) -> HostView:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    return HostView(tree.config(**config), LibvirtHypervisor(uri), utcnow)


def conn(view: HostView) -> Any:
    return view.hypervisor.connection()  # type: ignore[attr-defined]


# --- repairable: only what this agent's init repairs ---------------------------------------------


def test_a_stopped_pool_whose_directory_is_there_is_repairable_and_init_repairs_it(
    tree: HostTree, libvirt_uri: str
) -> None:
    view = libvirt_view(tree, libvirt_uri)
    conn(view).storagePoolLookupByName("pool-sd1").destroy()
    seen = view.observe()
    assert seen.storage_domains["sd-1"] is False
    assert seen.repairable == frozenset({"storage_domain:sd-1"})
    report = parse_report(seen.body("h-001"), "h-001")
    assessment = assess(report, CLUSTER, utcnow(), 30)
    assert assessment.is_repairable and assessment.primary is not None
    assert assessment.primary.reason is Reason.STORAGE_DOMAIN_UNREACHABLE
    assert view.initialize() is None
    assert view.observe().repairable == frozenset()


def test_a_stopped_pool_whose_directory_is_gone_is_not_repairable(tree: HostTree, libvirt_uri: str) -> None:
    view = libvirt_view(tree, libvirt_uri)
    conn(view).storagePoolLookupByName("pool-sd2").destroy()
    shutil.rmtree(tree.pool_dir("sd2"))
    seen = view.observe()
    assert seen.repairable == frozenset()
    detail = seen.problems["storage_domain:sd-2"].detail
    assert detail.startswith("storage domain sd-2: pool pool-sd2 is inactive; ") and "No such file" in detail
    assert not assess(parse_report(seen.body("h-001"), "h-001"), CLUSTER, utcnow(), 30).is_recoverable


def test_a_stopped_network_is_repairable_unless_a_device_it_forwards_to_is_missing(
    tree: HostTree, libvirt_uri: str
) -> None:
    view = libvirt_view(tree, libvirt_uri)
    conn(view).networkLookupByName("vmnet").destroy()
    seen = view.observe()
    assert seen.repairable == frozenset({"network:vmnet"})
    assert assess(parse_report(seen.body("h-001"), "h-001"), CLUSTER, utcnow(), 30).is_repairable

    # A network that forwards to a host device: repairable only while that device exists.
    bridged = """<network><name>bridged</name><forward mode="bridge"/><bridge name="br-host"/></network>"""
    conn(view).networkDefineXML(bridged)
    config = {"networks": {"vmnet": {"libvirt_network": "bridged"}}}
    other = HostView(tree.config(**config), view.hypervisor, utcnow)
    seen = other.observe()
    assert seen.repairable == frozenset()
    assert "its device br-host is missing" in seen.problems["network:vmnet"].detail
    tree.set_link("br-host")
    assert other.observe().repairable == frozenset({"network:vmnet"})


def test_what_init_does_not_bring_up_is_never_marked(tree: HostTree, libvirt_uri: str) -> None:
    view = libvirt_view(tree, libvirt_uri, init={"storage_domains": ["sd-2"], "networks": ["ovirtmgmt"]})
    conn(view).storagePoolLookupByName("pool-sd1").destroy()
    conn(view).networkLookupByName("vmnet").destroy()
    assert view.observe().repairable == frozenset()


# --- the report answers from a snapshot ---------------------------------------------------------


class HangingLibvirt:
    """A libvirt whose daemon stops answering (every call blocks) until ``release``."""

    def __init__(self, uri: str) -> None:
        from hostagent.libvirt_hypervisor import LibvirtHypervisor

        self.inner = LibvirtHypervisor(uri)
        self.uri = uri
        self.hung = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.inner, name)

        def maybe_hang(*args: Any) -> Any:
            if self.hung.is_set():
                self.release.wait(30)
            return call(*args)

        return maybe_hang


def test_a_hung_libvirt_never_makes_a_report_slow(tree: HostTree, libvirt_uri: str) -> None:
    hypervisor = HangingLibvirt(libvirt_uri)
    view = HostView(tree.config(libvirt={"uri": libvirt_uri, "timeout_s": 0.5}), hypervisor, utcnow)  # type: ignore[arg-type]
    looks = Snapshots(view, period_s=0.1)
    looks.start()
    try:
        assert looks.latest().kvm is True
        hypervisor.hung.set()
        slowest = 0.0
        deadline = time.monotonic() + 10
        while looks.latest().kvm:
            started = time.monotonic()
            looks.latest()
            slowest = max(slowest, time.monotonic() - started)
            assert time.monotonic() < deadline
        assert slowest < 0.05  # every answer came from the snapshot at once
        seen = looks.latest()
        assert seen.problems["kvm"].detail == f"libvirt {libvirt_uri} does not answer within 0.5 s"
        assert seen.version == "4.5.2"  # the configured version
        # The snapshot's time is when it was taken: fresh, never ahead.
        assert utcnow() - timedelta(seconds=3) < seen.at <= utcnow()
        # An init while libvirt hangs: each libvirt call bounded, the init answers in time.
        started = time.monotonic()
        problem = view.initialize()
        assert time.monotonic() - started < 5
        assert problem is not None and "does not answer within 0.5 s" in problem.detail
        hypervisor.release.set()
        hypervisor.hung.clear()
        deadline = time.monotonic() + 10
        while not looks.latest().kvm:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        hypervisor.release.set()
        looks.stop()
        hypervisor.inner.close()


def test_libvirt_down_gives_a_well_formed_report_the_product_reads_as_kvm_not_running(
    tree: HostTree, libvirt_uri: str
) -> None:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    config = tree.config(version=None)
    live = HostView(config, LibvirtHypervisor(libvirt_uri), utcnow)
    known = live.observe().version
    assert known.count(".") == 2
    # libvirt gone after it answered once: the last version it told.
    live.hypervisor = LibvirtHypervisor("test:///nonexistent/node.xml")
    seen = live.observe()
    assert seen.version == known
    # Never answered at all: "unknown", which the product accepts (and finds below any minimum).
    dead = HostView(config, LibvirtHypervisor("test:///nonexistent/node.xml"), utcnow).observe()
    assert dead.version == UNKNOWN_VERSION
    for look in (seen, dead):
        report = parse_report(look.body("h-001"), "h-001", now=utcnow())
        problem = assess(report, CLUSTER, utcnow(), 30).primary
        assert problem is not None and problem.reason is Reason.KVM_NOT_RUNNING
        assert "does not answer" in problem.detail


@pytest.mark.parametrize("failure", [RuntimeError("boom"), OSError("disk")])
def test_a_look_that_fails_leaves_the_last_snapshot_to_age(
    tree: HostTree, libvirt_uri: str, failure: Exception
) -> None:
    view = libvirt_view(tree, libvirt_uri)
    looks = Snapshots(view, period_s=0.05)
    looks.start()
    first = looks.latest()

    def broken(lane: str = "report") -> Any:
        raise failure

    view.observe = broken  # type: ignore[method-assign]
    time.sleep(0.3)
    looks.stop()
    assert looks.latest() is first


def test_a_look_begun_before_an_init_never_replaces_the_inits_look(tree: HostTree, libvirt_uri: str) -> None:
    view = libvirt_view(tree, libvirt_uri)
    looks = Snapshots(view, period_s=60)
    conn(view).storagePoolLookupByName("pool-sd1").destroy()
    before = view.observe()  # begun (and dated) before the init
    assert view.initialize() is None  # its look is offered to the snapshot
    looks.offer(before)  # the older look ends late: it must not win
    assert looks.latest().storage_domains["sd-1"] is True


def test_a_libvirt_answer_nobody_expected_is_kvms_problem_not_a_failed_look(
    tree: HostTree, libvirt_uri: str
) -> None:
    view = libvirt_view(tree, libvirt_uri)

    def garbage() -> str | None:
        raise ValueError("not XML")

    view.hypervisor.kvm_unavailable = garbage  # type: ignore[method-assign]
    seen = view.observe()
    assert seen.kvm is False
    assert seen.problems["kvm"].detail == f"libvirt {libvirt_uri}: ValueError: not XML"
    assert parse_report(seen.body("h-001"), "h-001").kvm is False
