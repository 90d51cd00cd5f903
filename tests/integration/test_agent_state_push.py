"""An agent whose state was lost: refused until the operator says --new-state; then the product
tells the new state its fence before any init, so no old fence ever runs there.

A real worker, ticks through the broker, the API over HTTP, and a real agent process on
libvirt's test driver (restarted on the same port, as systemd would).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.integration.api_fixtures import ApiServer, audit
from tests.integration.test_agent_e2e import product_env as product_env  # noqa: F401 - fixture
from tests.integration.test_agent_e2e import real_hosts as real_hosts  # noqa: F401 - fixture
from tests.integration.test_agent_e2e import register, shown, tick_until
from tests.support.hostagent import agent_url, start_agent
from tests.support.processes import start_worker

pytest_plugins = ("tests.integration.api_fixtures",)


def test_a_new_agent_state_is_told_the_product_fence_before_any_init(
    api: ApiServer, real_hosts: Any, product_env: Any, logs: Path, app_module: Any, deps: Any
) -> None:
    [host] = real_hosts("kvm-s")
    register(api, [host])
    first_state = host.call("GET", "/report").json()["agent"]["state_id"]
    worker = start_worker(product_env(), logs, concurrency=2, name="state-push")
    try:
        tick_until(app_module, deps, lambda: shown(api, host.host_id)["status"] == "up", "host up")
        events = [(e["event"], e["reason"]) for e in audit(deps, object_id=host.host_id)]
        assert events.index(("agent_fence_pushed", "agent_state_new")) < events.index(
            ("activation_succeeded", "up")
        ), events
        assert [r["fence"] for r in host.inits()] == [1]

        # The agent's state is lost (a bad restore: {}). It refuses to serve, saying what to do.
        port = host.url.rsplit(":", 1)[1]
        config = host.tree.root / "agent.toml"
        host.proc.stop()
        (host.tree.root / "state" / "state.json").write_text("{}")
        refused = start_agent(config, logs, "agent-refused", "--port", port)
        assert refused.popen.wait(30) == 2 and "--new-state" in refused.log()
        # The operator starts it with --new-state: a new state, fence 0.
        host.proc = start_agent(config, logs, "agent-new-state", "--port", port, "--new-state")
        assert agent_url(host.proc) == host.url
        now = host.call("GET", "/report").json()["agent"]
        assert now["state_id"] != first_state and now["highest_fence"] == 0

        # The host goes out and comes back: the product pushes its fence to the new state first.
        shutil.rmtree(host.tree.pool_dir("sd1"))
        tick_until(app_module, deps, lambda: shown(api, host.host_id)["status"] == "non_operational",
                   "host out")
        host.tree.pool_dir("sd1").mkdir(parents=True)
        tick_until(app_module, deps, lambda: shown(api, host.host_id)["status"] == "up", "host back up")
        pushed = [e for e in audit(deps, object_id=host.host_id, event="agent_fence_pushed")]
        assert [p["details"]["state_id"] for p in pushed] == [first_state, now["state_id"]]
        second = host.inits()
        assert [r["fence"] for r in second] == [2] and pushed[-1]["details"]["pushed"] == 2
        # An old holder's fence never runs on the new state: 0 inits with an old fence.
        stale = host.call("POST", "/init", json={"fence": 1, "activation_id": "old-holder"})
        assert (stale.status_code, stale.json()["error"]) == (409, "stale_fence")
        assert [r["fence"] for r in host.inits()] == [2]
    finally:
        worker.stop()
    assert "Traceback" not in worker.log(), worker.log()[-6000:]
