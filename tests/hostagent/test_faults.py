"""The agent's answer to every fault: state unwritable, SIGTERM during an init, a mistyped state
file, a v1 connect without an activation id, an activation id reused with another fence."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hostagent.persist import DiskStore, MemoryStore
from hostagent.protocol import ActivationReused, ProtocolState
from models.errors import InvalidInput
from tests.hostagent.conftest import RunningAgent
from tests.hostagent.test_process import Agents, agents  # noqa: F401 - fixture
from tests.support.hostagent import AUTH, HostTree, agent_url


class Unwritable(MemoryStore):
    """A store whose saves fail while ``broken`` is set, as a full or read-only disk does."""

    broken = False

    def save(self, document: dict[str, Any]) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        super().save(document)


def test_an_unwritable_state_is_503_state_unwritable_and_the_report_says_so(running: RunningAgent) -> None:
    store = Unwritable()
    ops = running.agent.ops
    ops.state._store = store  # noqa: SLF001 - the fault goes in under the protocol state
    store.broken = True
    with running.client() as client:
        answer = client.post("/init", json={"fence": 3, "activation_id": "a1"})
        assert answer.status_code == 503
        assert answer.json()["error"] == "state_unwritable"
        assert "No space left on device" in answer.json()["detail"]
        assert client.post("/fence", json={"fence": 9}).status_code == 503
        report = client.get("/report").json()
        assert report["state_unwritable"] == "cannot save the agent's state: No space left on device"
        assert client.get("/init/a1").status_code == 404  # nothing was accepted
        store.broken = False
        assert client.post("/init", json={"fence": 3, "activation_id": "a1"}).json() == {"ok": True}
        assert client.get("/report").json()["state_unwritable"] is None


def test_the_same_activation_id_with_another_fence_is_refused_and_keeps_the_first_record(
    running: RunningAgent,
) -> None:
    with running.client() as client:
        assert client.post("/init", json={"fence": 3, "activation_id": "a1"}).json() == {"ok": True}
        first = client.get("/init/a1").json()
        again = client.post("/init", json={"fence": 4, "activation_id": "a1"})
        assert again.status_code == 409
        assert again.json()["error"] == "activation_id_reused" and again.json()["fence"] == 3
        assert client.get("/init/a1").json() == first


def test_a_v1_connect_without_an_activation_id_is_a_connect_of_its_own(running: RunningAgent) -> None:
    with running.client() as client:
        for _ in range(2):
            assert client.post("/storage-domains/sd-1/connect", json={"fence": 1}).json() == {"ok": True}
        # An init still names its activation (v1 sends one too).
        missing = client.post("/init", json={"fence": 1})
        assert missing.status_code == 422 and "activation_id" in missing.text


@pytest.mark.parametrize(
    ("document", "entry"),
    [
        ({"fences": {"init": "7"}}, "fences.init"),
        ({"fences": [1]}, "fences"),
        ({"records": {}}, "records"),
        (
            {"records": [{"scope": "init", "activation_id": "a", "fence": "x", "started_at": "t"}]},
            "records[0]",
        ),
        ({"records": [{"scope": "init"}]}, "records[0]"),
    ],
)
def test_a_mistyped_state_file_is_a_named_error(tmp_path: Path, document: dict[str, Any], entry: str) -> None:
    whole = {"state_id": "s1", "fences": {}, "records": [], **document}
    (tmp_path / "state.json").write_text(json.dumps(whole))
    with pytest.raises(InvalidInput) as info:
        ProtocolState(DiskStore(tmp_path), lambda: datetime.now(UTC))
    assert info.value.field == "state_dir"
    assert f"the state file's {entry} must be" in info.value.message


def test_reuse_is_refused_by_the_state_machine_too() -> None:
    state = ProtocolState(MemoryStore(), lambda: datetime.now(UTC))
    record, _ = state.begin("init", 2, "a1")
    state.finish(record, ok=True)
    with pytest.raises(ActivationReused):
        state.begin("init", 5, "a1")
    assert state.highest() == 2


def test_sigterm_during_an_init_answers_outcome_unknown(tree: HostTree, agents: Agents) -> None:  # noqa: F811
    proc = agents.start(tree.write_config("[testing]\ninit_delay_s = 30.0\n"))
    url = agent_url(proc)
    answers: list[httpx.Response] = []

    def call() -> None:
        answers.append(
            httpx.post(url + "/init", json={"fence": 1, "activation_id": "a1"}, headers=AUTH, timeout=60)
        )

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 10
    while httpx.get(url + "/report", headers=AUTH, timeout=5).json()["init"] is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.popen.send_signal(signal.SIGTERM)
    caller.join(30)
    [answer] = answers
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "outcome_unknown" and answer.json()["activation_id"] == "a1"
    proc.popen.wait(30)
