"""What the agent checks of kvm and the CPU, as VDSM does: usable device, kvm offered, vmx/svm."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hostagent.host import HostView
from hostagent.probes import kvm_device_problem
from models.domain import Reason
from tests.support.hostagent import CPUINFO, HostTree


def utcnow() -> datetime:
    return datetime.now(UTC)


def test_a_device_qemus_user_cannot_open_is_not_usable(tmp_path: Path) -> None:
    device = tmp_path / "kvm"
    device.touch()
    device.chmod(0o600)
    assert kvm_device_problem(device, "") is None  # no user given: not checked
    assert kvm_device_problem(device, "root") is None  # root opens anything
    why = kvm_device_problem(device, "nobody")
    assert why is not None and "cannot be opened read-write by QEMU's user nobody" in why
    device.chmod(0o666)
    assert kvm_device_problem(device, "nobody") is None
    assert "does not exist" in (kvm_device_problem(device, "no-such-user-x") or "")
    assert "is missing" in (kvm_device_problem(tmp_path / "gone", "nobody") or "")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_the_device_group_gives_access_to_its_members(tmp_path: Path) -> None:
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody")
    device = tmp_path / "kvm"
    device.touch()
    os.chown(device, 0, nobody.pw_gid)
    device.chmod(0o660)
    assert kvm_device_problem(device, "nobody") is None
    os.chown(device, 0, grp.getgrnam("root").gr_gid)
    assert kvm_device_problem(device, "nobody") is not None


def view(tree: HostTree, uri: str, **probes: object) -> HostView:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    config = tree.config(probes={**tree.config().probes.model_dump(), **probes})
    return HostView(config, LibvirtHypervisor(uri), utcnow)


def test_kvm_reads_down_with_the_reason(tree: HostTree, libvirt_uri: str) -> None:
    (tree.root / "dev" / "kvm").chmod(0o600)
    seen = view(tree, libvirt_uri, qemu_user="nobody").observe()
    assert seen.kvm is False
    assert seen.problems["kvm"].reason is Reason.KVM_NOT_RUNNING
    assert "cannot be opened read-write by QEMU's user nobody" in seen.problems["kvm"].detail

    (tree.root / "proc" / "cpuinfo").write_text(CPUINFO.replace("vmx ", ""))
    seen = view(tree, libvirt_uri).observe()
    assert seen.kvm is False and "the CPU has none of vmx, svm" in seen.problems["kvm"].detail
    # A paravirtual KVM with no vmx/svm: the operator turns the flag check off.
    assert view(tree, libvirt_uri, cpu_virt_flags=[]).observe().kvm is True
    (tree.root / "proc" / "cpuinfo").write_text(CPUINFO.replace("vmx ", "svm "))
    assert view(tree, libvirt_uri).observe().kvm is True


def test_libvirt_cpu_flags_are_spelled_as_the_kernel_spells_them(tree: HostTree, libvirt_uri: str) -> None:
    from hostagent.libvirt_hypervisor import cpuinfo_spelling

    assert cpuinfo_spelling("sse4.2") == "sse4_2"
    assert cpuinfo_spelling("pclmuldq") == "pclmulqdq"
    assert cpuinfo_spelling("tsc-deadline") == "tsc_deadline_timer"
    assert cpuinfo_spelling("avx512-vpopcntdq") == "avx512_vpopcntdq"
    assert cpuinfo_spelling("vmx") == "vmx"
    assert cpuinfo_spelling("avx512vnni") == "avx512_vnni"
    assert cpuinfo_spelling("tsx-ldtrk") == "tsxldtrk"
    flags = view(tree, libvirt_uri, cpu_flags_from="libvirt").observe().cpu_flags
    assert "pae" in flags and not any("." in f or "-" in f for f in flags)


def test_the_test_driver_cannot_tell_whether_kvm_is_offered(tree: HostTree, libvirt_uri: str) -> None:
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    hypervisor = LibvirtHypervisor(libvirt_uri)
    assert hypervisor.kvm_unavailable() is None
    hypervisor.close()
