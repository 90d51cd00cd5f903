"""The worker app for agents named by DNS names: ``celery -A bench.named worker``.

Production fleets name their hypervisors. Here every ``<host>.agents.bench.test`` resolves to
its agent's own loopback address (read from the JSON file ``BENCH_NAMED_ADDRESSES`` names; else
127.0.0.1), inside the worker processes only (the machine's /etc/hosts is left alone): the name
still goes through ``socket.getaddrinfo`` on aiohttp's resolver thread, as a real name would,
without a DNS server's latency.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

SUFFIX = ".agents.bench.test"
ADDRESSES_ENV = "BENCH_NAMED_ADDRESSES"
_system_getaddrinfo = socket.getaddrinfo
_addresses: dict[str, str] | None = None


def _address(name: str) -> str:
    global _addresses
    if _addresses is None:
        path = os.environ.get(ADDRESSES_ENV)
        _addresses = json.loads(Path(path).read_text()) if path else {}
    return _addresses.get(name.removesuffix(SUFFIX), "127.0.0.1")


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str) and host.endswith(SUFFIX):
        host = _address(host)
    return _system_getaddrinfo(host, port, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo

from workers import app  # noqa: E402 - after the resolver is in place

__all__ = ["ADDRESSES_ENV", "SUFFIX", "app"]
