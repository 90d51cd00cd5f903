"""Which agent URLs and addresses the product may call: never metadata, link-local or its own services."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from models.errors import InvalidInput

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FIELD = "agent_url"
#: Why an agent URL carries no ``user:pass@``, and where an agent's credential goes instead.
NO_CREDENTIALS = (
    "must not carry credentials (user:pass@): an agent's credential is its per-host token "
    "(AUTORECOVERY_AGENT_KEY_FILE, handed to the agent at enrolment; docs/agent.md, Enrolment)"
)
#: Link-local ranges (cloud metadata services live there) and metadata addresses outside them.
FORBIDDEN_NETWORKS: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("169.254.0.0/16"), "a link-local address (cloud metadata lives there)"),
    (ipaddress.ip_network("fe80::/10"), "a link-local address"),
    (ipaddress.ip_network("fd00:ec2::254/128"), "the EC2 metadata address"),
    (ipaddress.ip_network("100.100.100.200/32"), "the Alibaba Cloud metadata address"),
)
#: Names of cloud metadata services (compared without a trailing dot, lower case).
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


@lru_cache(maxsize=65_536)  # ipaddress parses in Python; a fleet has few distinct agent hosts
def _ip(host: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_local(host: str) -> bool:
    """True for a name or address that means this machine (loopback, unspecified)."""
    if host in _LOCAL_NAMES:
        return True
    address = _ip(host)
    return address is not None and (address.is_loopback or address.is_unspecified)


def endpoint(url: str | None, default_port: int) -> tuple[str, int] | None:
    """The (host, port) a service URL points at, or None when it names none (unset, a socket)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or default_port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower().rstrip("."), port


def redact_url(url: str) -> str:
    """The URL with any ``user:pass@`` removed, for logs and messages (never shows a secret)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


@dataclass(frozen=True, slots=True)
class AgentUrlPolicy:
    """Where agents may be: an optional allow-list of networks, and the product's own endpoints."""

    networks: tuple[IPNetwork, ...] = ()
    services: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def build(cls, networks: Iterable[str], services: Iterable[tuple[str, int] | None]) -> AgentUrlPolicy:
        """Build a policy from CIDR texts and service endpoints (None entries are skipped).

        Raises:
            ValueError: a CIDR that does not parse.
        """
        nets = tuple(ipaddress.ip_network(text.strip(), strict=False) for text in networks if text.strip())
        return cls(nets, frozenset(s for s in services if s is not None))

    def check_url(self, url: str) -> None:
        """Refuse a URL the product must not call (scheme, metadata name, address, own service).

        Raises:
            InvalidInput: naming ``agent_url`` and why.
        """
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise InvalidInput(FIELD, f"is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise InvalidInput(FIELD, f"must be http:// or https://, not {parts.scheme or 'no'} scheme")
        if "@" in parts.netloc:
            raise InvalidInput(FIELD, NO_CREDENTIALS)
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise InvalidInput(FIELD, "must name a host")
        if host in METADATA_NAMES:
            raise InvalidInput(FIELD, f"{host} is a cloud metadata service")
        self._check_service(host, port)
        if _ip(host) is not None:
            self.check_address(host, port)

    def check_address(self, host: str, port: int) -> None:
        """Refuse an address (as resolved) the product must not call.

        Raises:
            InvalidInput: naming ``agent_url`` and why.
        """
        address = _ip(host)
        if address is None:
            raise InvalidInput(FIELD, f"{host!r} is not an IP address")
        for network, what in FORBIDDEN_NETWORKS:
            if address.version == network.version and address in network:
                raise InvalidInput(FIELD, f"{address} is {what}")
        if address.is_multicast or address.is_unspecified:
            raise InvalidInput(FIELD, f"{address} is not a host address")
        if self.networks and not any(
            address.version == net.version and address in net for net in self.networks
        ):
            allowed = ", ".join(str(n) for n in self.networks)
            raise InvalidInput(FIELD, f"{address} is outside AUTORECOVERY_AGENT_NETWORKS ({allowed})")
        self._check_service(str(address), port)

    def _check_service(self, host: str, port: int) -> None:
        for service_host, service_port in self.services:
            if port != service_port:
                continue
            if host == service_host or (_is_local(host) and _is_local(service_host)):
                raise InvalidInput(
                    FIELD, f"{host}:{port} is one of the product's own services, not an agent"
                )
