"""How fast the simulator serves reports: a load generator with no database and no parsing.

    python -m bench.simrate URLS_FILE [--rounds 2] [--concurrency 200]

Reads one agent URL per line, GETs every ``{url}/report`` ``--rounds`` times with aiohttp at the
given concurrency, reads each body whole, and prints ``{"reports": n, "started": t0, "ended": t1}``
(wall-clock times, so that loaders running at once can be put on one time line) as JSON.
The benchmark runs two of these at once, so the figure is what the simulator itself can serve,
not what one client process can ask for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp


async def pull(urls: list[str], rounds: int, concurrency: int) -> int:
    """GET every URL's report ``rounds`` times; return how many answered 200."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    ok = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(url: str) -> int:
            async with session.get(url + "/report") as resp:
                await resp.read()
                return int(resp.status == 200)

        for _ in range(rounds):
            ok += sum(await asyncio.gather(*(one(u) for u in urls)))
    return ok


def main() -> None:
    """Parse the arguments, pull, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("urls_file", type=Path)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    urls = [u.rstrip("/") for u in args.urls_file.read_text().split()]
    started = time.time()
    reports = asyncio.run(pull(urls, args.rounds, args.concurrency))
    print(json.dumps({"reports": reports, "started": started, "ended": time.time()}))


if __name__ == "__main__":
    main()
