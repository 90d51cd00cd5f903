"""An agent's state is never silently new: a missing or unusable state refuses to serve.

Deleted, ``{}``, a negative or boolean fence, wrong types, not JSON, NaN: the agent process
exits 2 naming ``state_dir`` and what to do; started with ``--new-state`` it serves with a new
``state_id`` in its report (the old file kept aside).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.hostagent.test_process import Agents
from tests.hostagent.test_process import agents as agents  # noqa: F401 - fixture
from tests.support.hostagent import AUTH, HostTree, agent_url

BROKEN = {
    "deleted": None,
    "empty object": "{}",
    "negative fence": '{"state_id": "s1", "fences": {"init": -41}, "records": []}',
    "boolean": "true",
    "boolean fence": '{"state_id": "s1", "fences": {"init": true}, "records": []}',
    "string fence": '{"state_id": "s1", "fences": {"init": "41"}, "records": []}',
    "fence past bigint": '{"state_id": "s1", "fences": {"init": 9223372036854775808}, "records": []}',
    "NaN fence": '{"state_id": "s1", "fences": {"init": NaN}, "records": []}',
    "no state_id": '{"fences": {"init": 41}, "records": []}',
    "records not a list": '{"state_id": "s1", "fences": {"init": 41}, "records": {}}',
    "a broken record": '{"state_id": "s1", "fences": {"init": 41}, "records": [{"scope": "init"}]}',
    "not JSON": '{"state_id": "s1", "fences": {"init": 4',
}


def _break(state_dir: Path, content: str | None) -> None:
    path = state_dir / "state.json"
    if content is None:
        path.unlink()
    else:
        path.write_text(content)


@pytest.mark.parametrize("case", BROKEN)
def test_an_unusable_state_refuses_to_serve(tree: HostTree, agents: Agents, case: str) -> None:
    config = tree.write_config()
    _break(tree.root / "state", BROKEN[case])
    said = agents.refused(config)
    assert "state_dir" in said and "--new-state" in said, said
    assert "listening on" not in said


def test_with_new_state_the_agent_serves_a_new_state_id_from_fence_zero(
    tree: HostTree, agents: Agents
) -> None:
    config = tree.write_config()
    state_dir = tree.root / "state"
    url = agents.run(config)
    with httpx.Client(base_url=url, headers=AUTH, timeout=20) as client:
        first = client.get("/report").json()["agent"]
        assert client.post("/init", json={"fence": 41, "activation_id": "a1"}).json() == {"ok": True}
        assert client.get("/report").json()["agent"] == {"state_id": first["state_id"], "highest_fence": 41}
    agents.stop()
    _break(state_dir, "{}")
    agents.refused(config)
    agents.procs.clear()
    url = agent_url(agents.start(config, "--new-state"))
    with httpx.Client(base_url=url, headers=AUTH, timeout=20) as client:
        now = client.get("/report").json()["agent"]
    assert now["state_id"] != first["state_id"] and now["highest_fence"] == 0
    kept = [p.name for p in state_dir.iterdir() if p.name.startswith("state.json.replaced-")]
    assert len(kept) == 1 and json.loads((state_dir / kept[0]).read_text()) == {}
