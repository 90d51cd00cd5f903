"""The file probes and the bounded storage probe (real files, real threads)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from hostagent.probes import (
    BoundedProber,
    Check,
    check_interface,
    probe_directory,
    read_cpu_flags,
    read_mem_available_mb,
)
from tests.support.hostagent import CPUINFO, MEMINFO, HostTree


def test_cpu_flags_come_from_the_first_flags_line(tmp_path: Path) -> None:
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    assert read_cpu_flags(tmp_path / "cpuinfo") == frozenset({"fpu", "vme", "vmx", "sse4_2", "avx"})
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd aes\n")
    assert read_cpu_flags(tmp_path / "arm") == frozenset({"fp", "asimd", "aes"})
    assert read_cpu_flags(tmp_path / "missing") is None


def test_mem_free_is_mem_available_in_mib(tmp_path: Path) -> None:
    (tmp_path / "meminfo").write_text(MEMINFO)
    assert read_mem_available_mb(tmp_path / "meminfo") == 8000
    assert read_mem_available_mb(tmp_path / "missing") == 0


@pytest.mark.parametrize(
    ("operstate", "carrier", "ok", "words"),
    [
        ("up", "1", True, ""),
        ("unknown", "1", True, ""),  # bridges often say unknown
        ("down", None, False, "is down"),  # a down link's carrier cannot be read
        ("up", "0", False, "no carrier"),
        ("lowerlayerdown", "0", False, "is lowerlayerdown"),
    ],
)
def test_an_interface_is_up_only_with_a_carrier(
    tree: HostTree, operstate: str, carrier: str | None, ok: bool, words: str
) -> None:
    tree.set_link("eth7", operstate, carrier)
    check = check_interface(tree.root / "sys" / "class" / "net", "eth7")
    assert check.ok is ok and words in check.detail


def test_a_missing_interface_is_named(tree: HostTree) -> None:
    assert check_interface(tree.root / "sys" / "class" / "net", "eth9") == Check(
        False, "interface eth9 not found"
    )


def test_a_directory_probe_reads_the_directory(tmp_path: Path) -> None:
    assert probe_directory(tmp_path).ok
    assert "No such file" in probe_directory(tmp_path / "gone").detail
    (tmp_path / "file").write_text("x")
    assert "Not a directory" in probe_directory(tmp_path / "file").detail


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 directory anyway")
def test_an_unreadable_directory_is_unreachable(tmp_path: Path) -> None:
    target = tmp_path / "pool"
    target.mkdir()
    target.chmod(0)
    try:
        assert "Permission denied" in probe_directory(target).detail
    finally:
        target.chmod(0o700)


class Hang:
    """A probe that blocks (as a read on a dead NFS server does) until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, path: Path) -> Check:
        self.calls += 1
        if path.name == "hung":
            self.release.wait(30)
        return probe_directory(path)


def test_a_hung_probe_answers_unreachable_in_time_and_is_not_started_twice(tmp_path: Path) -> None:
    hang = Hang()
    prober = BoundedProber(0.3, probe=hang)
    (tmp_path / "hung").mkdir()
    started = time.monotonic()
    answers = prober.check_all([tmp_path / "hung", tmp_path])
    assert time.monotonic() - started < 2
    assert answers[tmp_path] == Check(True)
    assert not answers[tmp_path / "hung"].ok and "no answer within 0.3s" in answers[tmp_path / "hung"].detail
    assert not prober.check(tmp_path / "hung").ok
    assert hang.calls == 2  # the stuck probe was waited on again, not started again
    hang.release.set()
    deadline = time.monotonic() + 5
    while not prober.check(tmp_path / "hung").ok:
        assert time.monotonic() < deadline
    assert prober.check(tmp_path / "hung").ok and hang.calls == 3  # the next look probes afresh
