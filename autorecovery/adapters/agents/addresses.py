"""Apply the agent URL policy where names become addresses: at every call, not only at registration."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
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
    """aiohttp's resolver, refusing names that resolve to a forbidden address."""

    def __init__(self, policy: AgentUrlPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve ``host`` and check every address it gives."""
        results = await self._inner.resolve(host, port, family)
        for result in results:
            try:
                self._policy.check_address(result["host"], port)
            except InvalidInput as exc:
                raise _refusal(exc) from None
        return results

    async def close(self) -> None:
        """Close the underlying resolver."""
        await self._inner.close()


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


def check_resolved(policy: AgentUrlPolicy, url: str) -> None:
    """Resolve the URL's host and check every address (the synchronous client's calls).

    Unlike ``PolicyResolver``, the client resolves again when it connects; a name that changes
    its answer in between is caught at the next call.

    Raises:
        RefusedAddress: the policy forbids the URL or one of its addresses.
    """
    check_target(policy, url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return  # nothing to check: the client's own connect fails and says so
    for *_, sockaddr in infos:
        try:
            policy.check_address(str(sockaddr[0]), port)
        except InvalidInput as exc:
            raise _refusal(exc) from None


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
