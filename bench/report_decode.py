"""Time decoding 10,000 realistic v2 reports: the standard library, orjson and msgspec.

    python -m bench.report_decode [--reports 10000] [--rounds 5]

Each candidate turns the raw bodies into validated ``Report`` values the way the product would
with it; the best CPU time (``time.process_time``: less disturbed by a busy machine than wall
time) of ``--rounds`` is printed. orjson is optional (not a dependency): its lines
are skipped when it is not installed.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from models.report import parse_report
from models.report_wire import decode_report

NOW = datetime(2026, 11, 24, 12, 0, 5, tzinfo=UTC)
FLAGS = [
    "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "sep", "mtrr", "pge",
    "mca", "cmov", "pat", "pse36", "clflush", "mmx", "fxsr", "sse", "sse2", "ss", "ht", "syscall",
    "nx", "pdpe1gb", "rdtscp", "lm", "constant_tsc", "vmx", "sse4_1", "sse4_2", "x2apic", "popcnt",
    "aes", "xsave", "avx", "f16c", "rdrand", "avx2",
]


def body(i: int) -> bytes:
    """One host's report as a real agent sends it (about 900 bytes)."""
    return json.dumps(
        {
            "host_id": f"h-{i:05d}",
            "reported_at": "2026-11-24T12:00:00Z",
            "protocol": 2,
            "init": None,
            "kvm": True,
            "version": "4.5.2",
            "cpu_flags": FLAGS,
            "networks": {"ovirtmgmt": True, "vmnet": True, "storage": True, "migration": True},
            "storage_domains": {"sd-1": True, "sd-2": True, "sd-3": True},
            "vms_running": i % 40,
            "mem_free_mb": 120_000 + i,
        }
    ).encode()


def candidates() -> dict[str, Callable[[bytes, str], object]]:
    """Each way of decoding and validating one body."""
    found: dict[str, Callable[[bytes, str], object]] = {
        "json.loads + parse_report": lambda raw, host: parse_report(json.loads(raw), host, now=NOW),
        "msgspec typed (decode_report)": lambda raw, host: decode_report(raw, host, now=NOW),
    }
    try:
        import orjson
    except ImportError:
        return found
    found["orjson.loads + parse_report"] = lambda raw, host: parse_report(orjson.loads(raw), host, now=NOW)
    return found


def main() -> None:
    """Print the best time of each candidate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bodies = [(body(i), f"h-{i:05d}") for i in range(args.reports)]
    for name, decode in candidates().items():
        best = float("inf")
        for _ in range(args.rounds):
            started = time.process_time()
            for raw, host in bodies:
                decode(raw, host)
            best = min(best, time.process_time() - started)
        each_us = best / args.reports * 1e6
        print(f"{name:32s} {best * 1000:8.1f} ms CPU for {args.reports:,} ({each_us:.1f} µs each)")


if __name__ == "__main__":
    main()
