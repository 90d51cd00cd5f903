"""Queue depth and build info in /metrics, with no worker consuming (this module starts none)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.api_fixtures import ApiServer
from tests.integration.test_metrics_counters import scrape, value
from tests.support.processes import wait_for

pytestmark = pytest.mark.integration
pytest_plugins = ("tests.integration.api_fixtures",)


def test_queue_depth_and_build_info_are_exported(api: ApiServer, app_module: Any) -> None:
    """Messages waiting in the monitoring queue show, read through the API's kept connection."""
    app_module.app.control.purge()
    for _ in range(3):
        app_module.app.send_task("autorecovery.nothing", queue="monitoring")

    def three_waiting() -> bool:
        return value(scrape(api), "autorecovery_broker_queue_depth", queue="monitoring") == 3

    wait_for(three_waiting, 30, "the queue depth to show 3 messages", interval_s=1.0)
    samples = scrape(api)
    assert value(samples, "autorecovery_metrics_source_up", source="broker") == 1
    assert any(k[0] == "autorecovery_build_info" for k in samples)
    app_module.app.control.purge()
