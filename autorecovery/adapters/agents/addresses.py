"""Apply the agent URL policy where names become addresses: at every call, not only at registration."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from models.agent_url import AgentUrlPolicy, IPNetwork
from models.errors import InvalidInput


class RefusedAddress(OSError):
    """An agent's name resolved to an address the policy forbids (aiohttp wraps OSErrors)."""


def _refusal(exc: InvalidInput) -> RefusedAddress:
    return RefusedAddress(f"agent URL policy: {exc.message}")


class PolicyResolver(AbstractResolver):
    """aiohttp's resolver, refusing forbidden addresses and remembering the allowed ones for a TTL.

    The connector connects to exactly the addresses returned here, after they were checked:
    the URL policy and the connection see one resolution, so a name that changes its answer
    (DNS rebinding) cannot slip a forbidden address in between. An answer is kept ``ttl_s``
    (per name, port and family): a fleet's names are resolved once per TTL, not once per tick.
    Concurrent lookups of one name wait for a single resolution; a refusal is remembered too.
    """

    def __init__(
        self,
        policy: AgentUrlPolicy,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        inner: AbstractResolver | None = None,
    ) -> None:
        self._policy = policy
        self._ttl_s = ttl_s
        self._clock = clock
        self._inner = inner  # None: the system's (aiohttp's default), built on first use
        self._cache: dict[tuple[str, int, int], tuple[float, list[ResolveResult] | RefusedAddress]] = {}
        self._locks: dict[tuple[str, int, int], asyncio.Lock] = {}
        self.resolutions = 0  # names actually resolved (tests and the bench read it)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` (or take it from the cache) and check every address it gives."""
        key = (host, port, int(family))
        found = self._cached(key)
        if found is not None:
            return _answer(found)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:  # one resolution per name at once; the others wait and take its answer
            found = self._cached(key)
            if found is None:
                try:
                    found = await self._resolve_checked(host, port, family)
                except RefusedAddress as exc:
                    found = exc  # a refusal is remembered as long as an answer
                if len(self._cache) >= _MAX_CACHED:
                    self._cache.clear()
                    self._locks = {key: lock}
                self._cache[key] = (self._clock() + self._ttl_s, found)
        return _answer(found)

    def _cached(self, key: tuple[str, int, int]) -> list[ResolveResult] | RefusedAddress | None:
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        return None

    async def _resolve_checked(
        self, host: str, port: int, family: socket.AddressFamily
    ) -> list[ResolveResult]:
        if self._inner is None:
            self._inner = DefaultResolver()  # needs the running loop: built on first use
        self.resolutions += 1
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                self._policy.check_address(result["host"], port)
            except InvalidInput as exc:
                raise _refusal(exc) from None
        return results

    async def close(self) -> None:
        """Close the underlying resolver and forget every answer."""
        self._cache.clear()
        self._locks.clear()
        if self._inner is not None:
            await self._inner.close()
            self._inner = None


def _answer(found: list[ResolveResult] | RefusedAddress) -> list[ResolveResult]:
    if isinstance(found, RefusedAddress):
        raise RefusedAddress(*found.args)
    return found


#: Names remembered at most (a fleet has one per hypervisor); past it the cache starts over.
_MAX_CACHED = 100_000


@lru_cache(maxsize=200_000)
def _verdict(policy: AgentUrlPolicy, url: str) -> InvalidInput | None:
    # Remembered: every tick checks every host's URL, and a URL's verdict never changes.
    try:
        policy.check_url(url)
    except InvalidInput as exc:
        return exc
    return None


def check_target(policy: AgentUrlPolicy, url: str) -> None:
    """Check a URL before a call: its scheme, name and (literal) address.

    Raises:
        RefusedAddress: the policy forbids it.
    """
    refused = _verdict(policy, url)
    if refused is not None:
        raise _refusal(refused)


def may_send_credential(url: str, plain_http_networks: Sequence[IPNetwork] = ()) -> bool:
    """True when an agent credential may go to ``url``: https, or plain http to a loopback
    address or to an address (given as such, not a name) in ``plain_http_networks``."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = (parts.hostname or "").lower().rstrip(".")
    if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False  # a name over plain http: where it resolves to is not checked here
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or any(address in net for net in plain_http_networks)
