"""The API's cost of pushed reports: single-report and bulk pushes, API CPU read from /proc.

    python -m bench.api [--hosts 200] [--single 3000] [--bulk 40] [--bulk-size 500]

The API runs as its own process (``python -m api``, as deployed) on the benchmark's PostgreSQL;
a load client in this process pushes fresh, clean reports over kept-alive connections (a
reporter token bound to the hosts, as per-host pushers would). Reported: API CPU per request
and per report, pushes per second per API core, and the wall rate; and, as this run's floor,
the CPU per request of a bare uvicorn app (``bench.api_floor``) that the same client pushes to.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.fleet import cpu_seconds
from tests.support.processes import Proc, spawn, wait_for

CLUSTER = "api-bench"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def add_api_fleet(db: Any, hosts: int) -> list[str]:
    """Register ``hosts`` hosts (up) in one cluster for the API pushes; return their ids."""
    ids = [f"a-{i:05d}" for i in range(hosts)]
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO clusters (id, required_networks, storage_domains, min_version, cpu_flags) "
            "VALUES (%s, '{mgmt}', '{sd-a}', '4.0', '{vmx}') ON CONFLICT DO NOTHING",
            (CLUSTER,),
        )
        conn.execute(
            "INSERT INTO hosts (id, cluster_id, agent_url, status) "
            "SELECT id, %(c)s, 'http://127.0.0.1:9/' || id, 'up' FROM unnest(%(ids)s::text[]) AS t(id) "
            "ON CONFLICT DO NOTHING",
            {"ids": ids, "c": CLUSTER},
        )
    return ids


def report(host_id: str) -> dict[str, Any]:
    """A fresh, clean report of one host, as its agent would push it."""
    return {
        "host_id": host_id,
        "reported_at": datetime.now(UTC).isoformat(),
        "kvm": True,
        "version": "4.5.2",
        "cpu_flags": ["vmx", "sse4_2"],
        "networks": {"mgmt": True},
        "storage_domains": {"sd-a": True},
        "vms_running": 3,
        "mem_free_mb": 12000,
    }


def _wait_listening(proc: Proc, port: int, what: str) -> None:
    """Wait until ``proc`` listens on ``port``; fail with its log if it exits first."""

    def up() -> bool:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{proc.log()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_for(up, 60, f"{what} to listen")


def start_api(env: dict[str, str], tmp: Path, host_ids: list[str]) -> tuple[Proc, str, str]:
    """Start ``python -m api`` with a reporter token bound to ``host_ids``; return it, URL, token."""
    token = secrets.token_urlsafe(24)
    port = _free_port()
    environ = {
        **env,
        "AUTORECOVERY_API_TOKENS": f"bench-admin:admin:{secrets.token_urlsafe(24)},"
        f"pusher:reporter:{token}:{'|'.join(host_ids)}",
        "AUTORECOVERY_API_HOST": "127.0.0.1",
        "AUTORECOVERY_API_PORT": str(port),
        "AUTORECOVERY_LOG_LEVEL": "WARNING",
    }
    command = [sys.executable, "-m", "api"]
    if os.environ.get("BENCH_API_PROFILE"):  # a pyinstrument profile of the API, written on exit
        command = [
            sys.executable,
            "-m",
            "pyinstrument",
            "-r",
            "text",
            "-o",
            os.environ["BENCH_API_PROFILE"],
            "-m",
            "api",
        ]
    proc = spawn(command, environ, tmp, "bench-api")
    url = f"http://127.0.0.1:{port}"
    _wait_listening(proc, port, "the API")
    time.sleep(0.5)
    return proc, url, token


async def _singles(url: str, token: str, host_ids: list[str], requests: int, concurrency: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        queue = iter(range(requests))

        async def worker() -> None:
            for i in queue:
                host_id = host_ids[i % len(host_ids)]
                body = json.dumps(report(host_id)).encode()
                async with session.post(f"{url}/api/v1/hosts/{host_id}/report", data=body) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"push answered {resp.status}: {(await resp.text())[:300]}")
                    await resp.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _bulks(url: str, token: str, host_ids: list[str], requests: int, size: int) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(requests):
            chunk = [host_ids[(i * size + j) % len(host_ids)] for j in range(size)]
            body = json.dumps({"reports": [report(h) for h in dict.fromkeys(chunk)]}).encode()
            async with session.post(f"{url}/api/v1/reports", data=body) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"bulk push answered {resp.status}: {(await resp.text())[:300]}")
                await resp.read()


def start_floor(env: dict[str, str], tmp: Path) -> tuple[Proc, str]:
    """Start the floor app (``bench.api_floor``); return it and its URL."""
    port = _free_port()
    proc = spawn([sys.executable, "-m", "bench.api_floor", str(port)], env, tmp, "bench-api-floor")
    _wait_listening(proc, port, "the floor app")
    return proc, f"http://127.0.0.1:{port}"


def floor_rate(env: dict[str, str], tmp: Path, host_ids: list[str], single: int) -> dict[str, Any]:
    """CPU per request of the floor app, pushed to as the API is (same client, same bodies)."""
    proc, url = start_floor(env, tmp)
    try:
        asyncio.run(_singles(url, "floor", host_ids, 200, 4))
        cpu_s, wall_s = measure(proc, _singles(url, "floor", host_ids, single, 4))
        return {
            "requests": single,
            "cpu_ms_per_request": round(1000 * cpu_s / single, 3),
            "wall_per_s": round(single / wall_s),
        }
    finally:
        proc.stop()


def measure(proc: Proc, run: Any) -> tuple[float, float]:
    """(API CPU seconds, wall seconds) of running the coroutine ``run``."""
    cpu0, wall0 = cpu_seconds(proc), time.perf_counter()
    asyncio.run(run)
    return cpu_seconds(proc) - cpu0, time.perf_counter() - wall0


def api_push_rates(
    env: dict[str, str],
    tmp: Path,
    db: Any,
    hosts: int = 200,
    single: int = 3000,
    bulk: int = 40,
    bulk_size: int = 500,
) -> dict[str, Any]:
    """Measure single and bulk pushes against a fresh API process; return the figures."""
    host_ids = add_api_fleet(db, max(hosts, bulk_size))
    proc, url, token = start_api(env, tmp, host_ids)
    try:
        asyncio.run(_singles(url, token, host_ids, 200, 4))  # warm up: connections, prepared plans
        cpu_s, wall_s = measure(proc, _singles(url, token, host_ids[:hosts], single, 4))
        out: dict[str, Any] = {
            "single": {
                "requests": single,
                "api_cpu_ms_per_request": round(1000 * cpu_s / single, 3),
                "per_api_core_per_s": round(single / cpu_s) if cpu_s else None,
                "wall_per_s": round(single / wall_s),
            }
        }
        # The same pushes to a bare uvicorn app, in this run: what any request costs here.
        out["floor"] = floor_rate(env, tmp, host_ids[:hosts], single)
        cpu_s, wall_s = measure(proc, _bulks(url, token, host_ids, bulk, bulk_size))
        reports = bulk * bulk_size
        out["bulk"] = {
            "requests": bulk,
            "reports_per_request": bulk_size,
            "api_cpu_us_per_report": round(1e6 * cpu_s / reports, 1),
            "per_api_core_per_s": round(reports / cpu_s) if cpu_s else None,
            "wall_per_s": round(reports / wall_s),
        }
        return out
    finally:
        if os.environ.get("BENCH_API_PROFILE"):  # pyinstrument writes its report on ^C
            proc.popen.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(30)
        proc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--single", type=int, default=3000)
    parser.add_argument("--bulk", type=int, default=40)
    parser.add_argument("--bulk-size", type=int, default=500)
    args = parser.parse_args()
    import tempfile

    from autorecovery.adapters.store import Database
    from tests.support.servers import start_servers

    with tempfile.TemporaryDirectory() as tmp:
        servers = start_servers(Path(tmp))
        db = Database(servers.database_url)
        db.open(wait_s=10.0)
        try:
            figures = api_push_rates(
                servers.env(), Path(tmp), db, args.hosts, args.single, args.bulk, args.bulk_size
            )
        finally:
            db.close()
            servers.close()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
