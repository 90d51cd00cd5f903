"""The agent_fence_ahead hold and the agent state the product last told, on the fake and on PostgreSQL."""

from __future__ import annotations

from models.domain import Cluster
from tests.contract.conftest import Backend
from tests.contract.helpers import T0, host, tx


def _one_host(backend: Backend) -> None:
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c1"))
        backend.repos.hosts.insert_host(conn, "h1", "c1", "http://h1", T0)


def test_a_hold_is_set_once_shown_and_cleared_with_the_agent_state(backend: Backend) -> None:
    _one_host(backend)
    with tx(backend) as conn:
        assert backend.repos.hosts.issued_fence(conn, "h1") == 0
        assert backend.repos.hosts.issued_fence(conn, "ghost") is None
        backend.repos.hosts.set_agent_state(conn, "h1", "state-a")
        assert backend.repos.hosts.hold_agent(conn, "h1", "agent_fence_ahead", "claims 2^80")
        assert not backend.repos.hosts.hold_agent(conn, "h1", "agent_fence_ahead", "again")  # held already
        assert not backend.repos.hosts.hold_agent(conn, "ghost", "agent_fence_ahead", "x")
    held = host(backend, "h1")
    assert (held.agent_hold, held.agent_state_id) == ("agent_fence_ahead", "state-a")
    with tx(backend) as conn:
        row = backend.repos.hosts.get_host(conn, "h1")
        assert row is not None and row.state["agent_hold_detail"] == "claims 2^80"
        assert backend.repos.hosts.clear_agent_hold(conn, "h1")
        assert not backend.repos.hosts.clear_agent_hold(conn, "h1")
    cleared = host(backend, "h1")
    assert (cleared.agent_hold, cleared.agent_state_id) == (None, None)  # the next init pushes first
