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
    # Two beats on one machine, each with its own heartbeat file (as two systemd units would be).
    files = [logs / f"beat{i}.heartbeat" for i in range(2)]
    envs = [{**servers.env(), "AUTORECOVERY_BEAT_HEARTBEAT_FILE": str(path)} for path in files]
    beats = [start_beat(envs[i], logs, name=f"beat{i}") for i in range(2)]
    try:
        wait_for(lambda: set(statuses(deps).values()) == {"up"}, 45, "beat-driven recovery")
        client.inject("kvm_down", hosts=["h-0003"])
        wait_for(lambda: statuses(deps)["h-0003"] == "non_operational", 20, "the fault seen")
        client.clear(hosts=["h-0003"])
        wait_for(lambda: statuses(deps)["h-0003"] == "up", 20, "recovery after the fault")
        # The liveness probe of each, run beside them: the leader loops, the standby waits; the
        # leader's heartbeat does not make the standby look like a leader (nor the reverse).
        [leader] = [i for i in range(2) if files[i].exists()]
        for i, said in ((leader, "beat is alive (leading)"), (1 - leader, "beat is alive (standing by)")):
            probe = subprocess.run(
                [sys.executable, "-m", "cli", "beat-alive"], env=envs[i], cwd=REPO,
                capture_output=True, text=True, timeout=60, check=False,
            )
            assert probe.returncode == 0 and said in probe.stdout, (i, probe.stdout, probe.stderr)
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
