"""Host agent clients: the HTTP adapter and an in-memory fake for unit tests.

The port they implement (``AgentClient``) and its values are ``autorecovery.ports.agents``,
re-exported here for the adapters' callers.
"""

from __future__ import annotations

from autorecovery.ports.agents import AgentClient, InitResult, InitStatus, Target

__all__ = ["AgentClient", "InitResult", "InitStatus", "Target"]
