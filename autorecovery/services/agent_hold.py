"""Clearing an ``agent_fence_ahead`` hold: the agent state restored, the product tells it its fence.

The hold is cleared only when the agent, told the product's fence (``POST /fence``), answers a
highest fence the product issued: an agent still ahead stays held (restore its state first,
docs/agent.md "After an agent_fence_ahead event").
"""

from __future__ import annotations

import logging
from typing import Any

from autorecovery.adapters.agents import AgentClient, Target
from autorecovery.adapters.store import PG_REPOS
from autorecovery.adapters.store.db import Database
from autorecovery.services import Clock
from autorecovery.services.audit import Trail
from models.errors import AgentUnavailable, Conflict, NotFound
from models.fencing import MIN_FENCE

log = logging.getLogger(__name__)


class AgentHoldService:
    """The admin's way out of a security hold, one host at a time."""

    def __init__(self, db: Database, agents: AgentClient, clock: Clock, repos: Any = PG_REPOS) -> None:
        self.db = db
        self.agents = agents
        self.clock = clock
        self.repos = repos

    def clear(self, host_id: str, actor: str) -> dict[str, Any]:
        """Push the product's fence to the host's agent, then clear its hold (audited).

        Raises:
            NotFound: no such host.
            Conflict: the host is not held, the agent cannot be told, or it still claims more.
        """
        with self.db.transaction() as conn:
            loaded = self.repos.hosts.get_host(conn, host_id)
        if loaded is None:
            raise NotFound("host", host_id)
        host = loaded.host
        if host.agent_hold is None:
            raise Conflict(f"host {host_id} is not held", {"host_id": host_id})
        fence = max(host.fence, MIN_FENCE)
        try:
            highest = self.agents.raise_fence(Target(host_id, host.agent_url), fence)
        except AgentUnavailable as exc:
            raise Conflict(f"host {host_id}: its agent could not be told fence {fence}: {exc}") from exc
        if highest is None:
            raise Conflict(f"host {host_id}: its agent has no POST /fence (a v1 agent)")
        if highest > host.fence:
            log.warning("host %s: hold kept: the agent still claims fence %s > %s", host_id, highest, fence)
            raise Conflict(
                f"host {host_id}: its agent still claims fence {highest}, above the product's {host.fence}: "
                "restore the agent's state first (docs/agent.md)",
                {"host_id": host_id, "agent_highest": str(highest), "fence": host.fence},
            )
        with self.db.transaction() as conn:
            cleared = self.repos.hosts.clear_agent_hold(conn, host_id)
            if cleared:
                details = {"pushed": fence, "agent_highest": highest, "was": host.agent_hold}
                Trail(self.repos, conn, self.clock(), actor).host(
                    host_id, "agent_hold_cleared", details, reason=host.agent_hold
                )
        log.warning(
            "host %s: %s hold cleared by %s (agent told fence %d)", host_id, host.agent_hold, actor, fence
        )
        return {"host_id": host_id, "cleared": cleared, "fence": fence, "agent_highest": highest}
