"""The demo's verdict on a race built on purpose: a fault that lands between the check and the init.

A real worker re-checks the host on a fresh, clean report, sets it initializing and freezes at the
failpoint right before the agent's init; the test injects a fault into the simulator, then lets the
worker go on. The simulator records the init as faulted (the fault was there when it arrived); the
verdict, judged on the report the worker checked, must call it a race, not a broken rule, and name
the host, the activation and the times of check and init.
"""

from __future__ import annotations

import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.up.summary import summarise
from harness.up.verdict import verdict
from tests.integration.conftest import host_status, send_ticks
from tests.support.processes import start_worker, wait_for


def test_a_fault_between_the_check_and_the_init_is_named_and_breaks_no_rule(
    sim: Any, servers: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=1)
    started = datetime.now(UTC)
    ticker = start_worker(servers.env(), logs, queues="monitoring", concurrency=1, name="ticker")
    env = servers.env(AUTORECOVERY_FAILPOINTS="stop_before_init")
    frozen = start_worker(env, logs, queues="activation", pool="solo", name="frozen")
    try:
        send_ticks(app_module, deps)
        wait_for(lambda: "failpoint stop_before_init" in frozen.log(), 20, "the worker to check and freeze")
        assert host_status(deps, "h-0001")["status"] == "initializing"
        client.inject("kvm_down", hosts=["h-0001"])
        frozen.popen.send_signal(signal.SIGCONT)
        wait_for(lambda: host_status(deps, "h-0001")["status"] != "initializing", 20, "the init to end")
    finally:
        frozen.stop()
        ticker.stop()

    [call] = client.inits("h-0001")
    assert call["faulted"], "the simulator saw the fault when the init arrived"
    summary = summarise(deps.db, deps.views, client, None, started)
    assert summary["auto_inits_on_a_report_with_a_problem"] == []
    [raced] = summary["faults_between_check_and_init"]
    assert raced.startswith(f"host h-0001, activation {call['activation_id']}: clean report, the fault came")
    assert "checked at " in raced and "init at " in raced
    assert verdict(summary, settled=False) == []
