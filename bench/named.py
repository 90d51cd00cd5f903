"""The worker app for agents named by DNS names: ``celery -A bench.named worker``.

Production fleets name their hypervisors. Here every ``<host>.agents.bench.test`` resolves to
loopback, inside the worker processes only (the machine's /etc/hosts is left alone): the name
still goes through ``socket.getaddrinfo`` on aiohttp's resolver thread, as a real name would,
without a DNS server's latency.
"""

from __future__ import annotations

import socket
from typing import Any

SUFFIX = ".agents.bench.test"
_system_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str) and host.endswith(SUFFIX):
        host = "127.0.0.1"
    return _system_getaddrinfo(host, port, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo

from workers import app  # noqa: E402 - after the resolver is in place

__all__ = ["SUFFIX", "app"]
