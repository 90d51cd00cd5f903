"""Review: an agent whose new state cannot be told the product's fence is not tried every tick."""

from __future__ import annotations

from typing import Any

import pytest

from models.assessment import assess
from models.domain import AgentState, Trigger
from models.errors import AgentUnavailable
from models.policy import decide
from tests.fakes.ports import good_report
from tests.unit.activation.conftest import CLUSTER, MAX_AGE_S, World


@pytest.mark.xfail(strict=True, reason="review: fence_not_pushed closes with no backoff")
def test_a_fence_that_cannot_be_pushed_backs_the_host_off(world: World) -> None:
    attempts = 0
    for n in range(1, 4):
        act_id = world.out_host(activation_id=f"act-{n}")
        world.agents.reports["h1"] = good_report(
            "h1", world.clock(), protocol=2, agent=AgentState("new-state", 0)
        )

        def refuse(target: Any, fence: int) -> int | None:
            raise AgentUnavailable("h1: /fence: HTTP 500")

        world.agents.raise_fence = refuse  # type: ignore[method-assign]
        out = world.activation.run(act_id, "h1")
        assert out.outcome == "fence_not_pushed"
        attempts += 1
        world.clock.advance(10)  # one tick later
        report = good_report("h1", world.clock(), protocol=2, agent=AgentState("new-state", 0))
        assessment = assess(report, CLUSTER, world.clock(), MAX_AGE_S)
        decision = decide(world.host(), assessment, Trigger.AUTO, now=world.clock())
        if not decision.is_activate:
            break
    assert attempts == 1, f"activated again every tick ({attempts} in a row), with no backoff"
