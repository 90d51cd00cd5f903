"""Real beat processes drive the loop; a second, duplicate beat does no harm."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.integration.conftest import settle, statuses
from tests.support.processes import REPO, start_beat, wait_for


def test_two_beats_bring_the_fleet_up_once(
    sim: Any, worker: Any, servers: Any, logs: Path, deps: Any
) -> None:
    client = sim(hosts=6)
    beats = [start_beat(servers.env(), logs, name=f"beat{i}") for i in range(2)]
    try:
        wait_for(lambda: set(statuses(deps).values()) == {"up"}, 45, "beat-driven recovery")
        client.inject("kvm_down", hosts=["h-0003"])
        wait_for(lambda: statuses(deps)["h-0003"] == "non_operational", 20, "the fault seen")
        client.clear(hosts=["h-0003"])
        wait_for(lambda: statuses(deps)["h-0003"] == "up", 20, "recovery after the fault")
        # The liveness probe, run beside them (one /tmp here, as in one container): a leader loops.
        probe = subprocess.run(
            [sys.executable, "-m", "cli", "beat-alive"], env=servers.env(), cwd=REPO,
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert probe.returncode == 0 and "beat is alive (leading)" in probe.stdout, probe.stderr
    finally:
        for beat in beats:
            beat.stop()
    settle(deps)
    assert client.overlaps()["count"] == 0
    with deps.db.transaction() as conn:
        rows = conn.execute(
            "SELECT host_id, count(*) AS n FROM activations WHERE state = 'done' "
            "GROUP BY host_id"
        ).fetchall()
    per_host = {r["host_id"]: r["n"] for r in rows}
    assert per_host.pop("h-0003") == 2
    assert set(per_host.values()) == {1}
    assert all("beat" in b.log().lower() for b in beats)
