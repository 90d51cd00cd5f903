"""The limit client: bare aiohttp and msgspec on the same reports, no product code in between.

    python -m bench.limit URLS_FILE [--rounds 4] [--batch-size 500] [--concurrency 200]

What a pulling tick could cost at best: one kept-alive session for the process, every agent's
``/report`` fetched in batches as the tick cuts them, each body decoded into a typed struct. No
checks, no database. Its garbage collector is set as a worker pool process's
(``workers.tune_gc``): with a connection per agent alive, Python's default thresholds cost this
client more than its HTTP, and the ratio is to measure the product's work, not a setting.
Prints ``{"cpu_s": [...], "wall_s": [...], "reports": n}`` per round (the first round opens
the connections; the benchmark takes the median of the others).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import time
from pathlib import Path

import aiohttp
import msgspec


class _Init(msgspec.Struct):
    activation_id: str
    fence: int
    started_at: str | None = None


class _Report(msgspec.Struct):
    host_id: str
    reported_at: str
    kvm: bool
    version: str
    cpu_flags: list[str]
    networks: dict[str, bool]
    storage_domains: dict[str, bool]
    vms_running: int
    mem_free_mb: int
    protocol: int = 1
    init: _Init | None = None
    details: dict[str, str] | None = None


_DECODER = msgspec.json.Decoder(_Report)
#: As ``workers.GC_GEN0_THRESHOLD`` (not imported: no product code here).
_GC_GEN0_THRESHOLD = 50_000


async def pull(urls: list[str], rounds: int, batch_size: int, concurrency: int) -> dict[str, list[float]]:
    """Fetch and decode every URL's report, batch after batch, ``rounds`` times."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    out: dict[str, list[float]] = {"cpu_s": [], "wall_s": []}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(url: str) -> _Report:
            async with session.get(url + "/report") as resp:
                return _DECODER.decode(await resp.read())

        for _ in range(rounds):
            cpu, wall = time.process_time(), time.perf_counter()
            for start in range(0, len(urls), batch_size):
                await asyncio.gather(*(one(u) for u in urls[start : start + batch_size]))
            out["cpu_s"].append(time.process_time() - cpu)
            out["wall_s"].append(time.perf_counter() - wall)
    return out


def main() -> None:
    """Parse the arguments, pull, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls_file", type=Path)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    urls = [u.rstrip("/") for u in args.urls_file.read_text().split()]
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
    figures = asyncio.run(pull(urls, args.rounds, args.batch_size, args.concurrency))
    print(json.dumps({**figures, "reports": len(urls)}))


if __name__ == "__main__":
    main()
