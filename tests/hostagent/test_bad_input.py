"""Every bad input to the agent is a 4xx JSON naming the field; nothing runs, nothing is logged raw.

Fences outside 1 … 2⁶³−1 (0, negative, 2⁶³, 2⁸⁰, NaN, Infinity, a float, a bool, a string), a
lone surrogate or a CR/LF in ``activation_id``: 422, the fence unchanged, no init started.
"""

from __future__ import annotations

import logging

import pytest

from tests.hostagent.conftest import RunningAgent

BAD_FENCES = [
    "0",
    "-1",
    "9223372036854775808",
    str(2**80),
    "NaN",
    "Infinity",
    "-Infinity",
    "1.5",
    "1e3",
    "true",
    '"7"',
    "null",
]


@pytest.mark.parametrize("fence", BAD_FENCES)
@pytest.mark.parametrize("route", ["/init", "/fence", "/storage-domains/sd-1/connect"])
def test_a_fence_out_of_bounds_is_422(running: RunningAgent, route: str, fence: str) -> None:
    raw = f'{{"fence": {fence}, "activation_id": "a1"}}'
    with running.client() as client:
        answer = client.post(route, content=raw, headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid" and answer.json()["field"] == "fence"
    assert running.agent.ops.state.highest() == 0 and running.agent.ops.state.running() is None


def test_the_highest_fence_is_accepted(running: RunningAgent) -> None:
    with running.client() as client:
        assert client.post("/fence", json={"fence": 2**63 - 1}).json() == {"highest": 2**63 - 1}


@pytest.mark.parametrize(
    "activation_id", ['"a\\ud800b"', '"a\\r\\nINFO forged line"', '"tab\\there"', '"nul\\u0000"', '""', "7"]
)
def test_an_activation_id_that_cannot_be_logged_or_stored_is_422(
    running: RunningAgent, activation_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    raw = f'{{"fence": 3, "activation_id": {activation_id}}}'
    with caplog.at_level(logging.INFO), running.client() as client:
        answer = client.post("/init", content=raw, headers={"Content-Type": "application/json"})
        status = client.get("/init/a%ED%A0%80b")
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "activation_id"
    assert status.status_code == 404 and status.json()["error"] == "not_found"
    assert running.agent.ops.state.highest() == 0
    assert "forged line" not in caplog.text


def test_a_body_that_is_not_json_is_422(running: RunningAgent) -> None:
    with running.client() as client:
        for raw in (b"{", b"\xff\xfe", b"[]", b'"fence"'):
            answer = client.post("/init", content=raw, headers={"Content-Type": "application/json"})
            assert answer.status_code == 422, (raw, answer.text)
            assert answer.json()["error"] == "invalid"
