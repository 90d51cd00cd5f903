"""Per-host agent credentials: each host's token is HMAC-SHA256(product key, host id).

Holding one hypervisor's token opens no other agent: another host's token needs the product
key. ``autorecovery hosts enroll ID`` writes a host's token for its agent. Rotation without
downtime: the new key becomes the key, the old one the previous key; a call answered 401 is
tried once with the previous key's token, until every agent is re-enrolled.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

#: Domain separation: a token is only ever an agent token of this product, for one host.
_CONTEXT = b"autorecovery agent token v1\x00"


def host_token(key: bytes, host_id: str) -> str:
    """The agent token of ``host_id`` under ``key`` (64 hex characters)."""
    return hmac.new(key, _CONTEXT + host_id.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class AgentCredentials:
    """What the product sends each agent: a per-host token (key), or one fleet token (legacy)."""

    key: bytes | None = None
    previous_key: bytes | None = None
    #: One token for every agent (AUTORECOVERY_AGENT_TOKEN_FILE): the simulator's, and older setups.
    fleet_token: str | None = None

    def __repr__(self) -> str:
        shown = {"key": self.key, "previous_key": self.previous_key, "fleet_token": self.fleet_token}
        parts = ", ".join(f"{k}={'set' if v else 'unset'}" for k, v in shown.items())
        return f"AgentCredentials({parts})"

    @property
    def is_set(self) -> bool:
        """True when a credential is sent (then only over https, to loopback, or allowed networks)."""
        return self.key is not None or self.fleet_token is not None

    def tokens(self, host_id: str) -> list[str]:
        """The tokens to try for ``host_id``, in order (the previous key's only after a 401)."""
        if self.key is None:
            return [self.fleet_token] if self.fleet_token else []
        found = [host_token(self.key, host_id)]
        if self.previous_key is not None:
            found.append(host_token(self.previous_key, host_id))
        return found
