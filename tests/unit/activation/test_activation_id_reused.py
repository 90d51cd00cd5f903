"""The agent's 409 ``activation_id_reused`` is no stale fence and no security event.

A resumed activation (its first attempt sent the v2 init, then its step was retried) is begun
again with a new fence under the same activation id. When asking the agent about the earlier
init fails for a moment, the init is sent again; the product's own agent answers 409
``activation_id_reused`` (docs/agent.md), which names no ``highest``. The client read every
409 but ``busy`` as ``stale_fence``, and a refusal whose fence is the product's latest is
taken for an agent ahead of the product: the host was held ``agent_fence_ahead`` (a security
event, only an admin clears it) while its own init ran.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from autorecovery.adapters.agents import InitStatus, Target
from autorecovery.adapters.agents.http import _init_answer
from models.errors import AgentUnavailable, InitOutcomeUnknown, StaleFence
from tests.unit.activation.conftest import World

REUSED = {"error": "activation_id_reused", "activation_id": "act-1", "fence": 1, "started_at": "x"}


def test_the_client_reads_activation_id_reused_as_the_earlier_init_not_a_stale_fence() -> None:
    body = {"fence": 2, "activation_id": "act-1"}
    with pytest.raises(InitOutcomeUnknown):
        _init_answer("http://h1/init", body, 409, json.dumps(REUSED).encode())
    stale = {"error": "stale_fence", "highest": 7}
    with pytest.raises(StaleFence):
        _init_answer("http://h1/init", body, 409, json.dumps(stale).encode())


def test_a_resumed_activation_whose_agent_knows_its_id_is_not_a_security_hold(world: World) -> None:
    act_id = world.out_host()
    world.agents.reports["h1"] = replace(world.agents.reports["h1"], protocol=2)
    old = world.begin(act_id)  # the first attempt: fence 1, init sent (202), then retried
    with world.db.transaction() as conn:
        assert world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=old)
    asks = {"n": 0}

    def status_once_unanswered(target: Target, activation_id: str) -> InitStatus | None:
        asks["n"] += 1
        if asks["n"] == 1:
            raise AgentUnavailable("h1: GET /init: connection reset")
        return InitStatus(activation_id, old, running=False, ok=True)

    def reused(target: Target, fence: int, activation_id: str) -> Any:
        body = {"fence": fence, "activation_id": activation_id}
        return _init_answer("http://h1/init", body, 409, json.dumps(REUSED).encode())

    world.agents.init_status = status_once_unanswered  # type: ignore[method-assign]
    world.agents.start_init = reused  # type: ignore[method-assign]
    out = world.activate(act_id)
    host = world.host()
    assert host.agent_hold is None, "held as a security event by its own earlier init"
    assert out.outcome == "up"
