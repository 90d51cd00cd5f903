"""The wedge: agents (or a man in the middle) claiming fences the product never issued.

Each wedge agent reports clean and answers every init ``stale_fence`` with a highest fence of
2⁶³−1, 2⁸⁰, or one above the fence it was sent. A real worker runs the ticks; the product's
fence never moves to the claim, the host is held ``agent_fence_ahead`` (audited, counted), the
rest of the fleet recovers, and an admin's clear over the real API (refused while the agent
still claims more) lets the host come back with the product's own next fence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from autorecovery.services.fleet import HostSpec
from models.domain import Cluster
from tests.integration.api_fixtures import ApiServer, audit
from tests.integration.conftest import host_status, settle, statuses
from tests.support.misbehaving import MisbehavingAgents
from tests.support.processes import Proc, wait_for

pytest_plugins = ("tests.integration.api_fixtures",)  # the ``api`` fixture

WEDGES = ("wedge-max", "wedge-2e80", "wedge-plus")


@pytest.fixture
def agents() -> Iterator[MisbehavingAgents]:
    server = MisbehavingAgents().start()
    yield server
    server.close()


def _tick_until(tick: Callable[..., dict[str, Any]], deps: Any, done: Callable[[], bool]) -> None:
    def step() -> bool:
        tick(timeout_s=60)
        settle(deps, 60)
        return done()

    try:
        wait_for(step, 120, "the fleet to settle")
    except AssertionError:
        with deps.db.transaction() as conn:
            rows = conn.execute(
                "SELECT id, status, reason, detail, fence, agent_hold, last_decision FROM hosts"
            ).fetchall()
        raise AssertionError([dict(r) for r in rows]) from None


def test_agents_claiming_fences_never_issued_are_held_and_cleared_by_an_admin(
    sim: Callable[..., Any],
    agents: MisbehavingAgents,
    fleet_service: Any,
    worker: Proc,
    tick: Callable[..., dict[str, Any]],
    deps: Any,
    api: ApiServer,
) -> None:
    client = sim(hosts=4, clusters=1)
    others = [h["id"] for h in client.fleet()["hosts"]]
    wedged = {f"h-{kind}": kind for kind in WEDGES}
    fleet_service.register_cluster(Cluster("c-wedge"), "test")  # requires nothing a wedge lacks
    fleet_service.register_hosts(
        [HostSpec(host, "c-wedge", agents.url(kind, host)) for host, kind in wedged.items()], "test"
    )

    def all_decided() -> bool:
        now = statuses(deps)
        held = all(host_status(deps, h)["agent_hold"] for h in wedged)
        return held and all(now[h] == "up" for h in others)

    _tick_until(tick, deps, all_decided)
    for host in wedged:
        row = host_status(deps, host)
        # One fence issued (the refused init's); the claim never became the product's counter.
        assert (row["fence"], row["agent_hold"], row["reason"]) == (
            1,
            "agent_fence_ahead",
            "agent_fence_ahead",
        )
        assert row["status"] == "non_operational"
        [event] = audit(deps, object_id=host, event="agent_fence_ahead")
        assert event["details"]["issued"] == 1 and event["details"]["source"] == "stale_fence"
    assert all(host_status(deps, h)["agent_hold"] is None for h in others)  # other hosts unaffected

    # More ticks: held hosts get no activation (no fence issued, no init), whatever they report.
    tick(timeout_s=60)
    settle(deps, 60)
    assert all(host_status(deps, h)["fence"] == 1 for h in wedged)
    with api.client("alice") as admin, api.client("vic") as viewer:
        _clear(api, agents, deps, wedged, admin, viewer)
    _tick_until(tick, deps, lambda: all(statuses(deps)[h] == "up" for h in wedged))
    for host in wedged:
        assert agents.accepted[host] == [("fence", 1), ("init", 2)], agents.accepted[host]
        assert host_status(deps, host)["fence"] == 2
        assert audit(deps, object_id=host, event="agent_hold_cleared")[0]["actor"] == "alice"


def _clear(
    api: ApiServer,
    agents: MisbehavingAgents,
    deps: Any,
    wedged: dict[str, str],
    admin: httpx.Client,
    viewer: httpx.Client,
) -> None:
    shown = viewer.get(f"/api/v1/hosts/{'h-wedge-max'}").json()
    assert shown["last_decision"]["code"] == "agent_fence_ahead", shown["last_decision"]
    assert any(h["hold"] == "agent_fence_ahead" for h in shown["held_by"]), shown["held_by"]
    metrics = viewer.get("/metrics").text
    assert "autorecovery_hosts_agent_fence_ahead 3.0" in metrics

    # The admin clears before restoring the agent: refused, still held.
    refused = admin.post("/api/v1/hosts/h-wedge-max/clear-agent-hold")
    assert refused.status_code == 409, refused.text
    assert "still claims fence 9223372036854775807" in refused.json()["message"]
    assert viewer.post("/api/v1/hosts/h-wedge-max/clear-agent-hold").status_code == 403
    # The agent's state restored: the clear pushes the product's fence, then the host recovers.
    for host in wedged:
        agents.restored.add(host)
        answer = admin.post(f"/api/v1/hosts/{host}/clear-agent-hold")
        assert answer.status_code == 200, answer.text
        assert answer.json()["fence"] == 1
