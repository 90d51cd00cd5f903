"""The demo's VM launcher: a host gone silent since the ranking is a failed start, not a stall."""

from __future__ import annotations

import json
import random

import httpx

from harness.sim.launcher import VmLauncher


def test_a_silent_host_is_a_failed_attempt_and_the_next_host_is_tried() -> None:
    runs: list[dict[str, object]] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/placement"):
            return httpx.Response(200, json={"hosts": [{"host_id": "h-1"}, {"host_id": "h-2"}]})
        runs.append(json.loads(request.content))
        return httpx.Response(201, json={"charged": {}, "errored": []})

    def agents(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/agents/h-1/vms":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json={"ok": True})

    launcher = VmLauncher(
        api=httpx.Client(transport=httpx.MockTransport(api), base_url="http://api"),
        sim=httpx.Client(transport=httpx.MockTransport(agents), base_url="http://sim"),
        clusters=["c-1"],
        rng=random.Random(1),
    )
    assert launcher.launch_one() == {"charged": {}, "errored": []}
    [run] = runs
    assert run["attempts"] == [
        {"host": "h-1", "ok": False, "error": "the host did not answer the VM start in time"},
        {"host": "h-2", "ok": True, "error": None},
    ]
    assert (launcher.launched, launcher.failed_attempts) == (1, 1)
