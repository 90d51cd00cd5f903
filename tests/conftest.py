"""The suite's tiers: `make test` runs all but the slow real-service tier, `make test-slow` that tier.

The slow tier is listed here, in one place: outages (Redis killed, PostgreSQL away a minute),
a real libvirtd, clean installs into new virtual environments, generated API traffic, the
200-host storm, and the scenarios that wait out ticks, locks and timeouts on purpose (hung agents,
inits slower than every timeout, frozen holders, a beat taking over from a dead one). CI runs
both tiers (`.ci/run`); the README says how long each takes.
"""

from __future__ import annotations

import pytest

#: Test modules (or single tests, as ``path::name``) of the slow tier.
SLOW = (
    "tests/integration/test_real_libvirtd.py",
    "tests/integration/test_pg_outage.py",
    "tests/integration/test_restarts.py",
    "tests/integration/test_beat_outage.py",
    "tests/integration/test_image_files.py",
    "tests/integration/test_api_schemathesis.py",
    "tests/integration/test_housekeeping.py",
    "tests/integration/test_tick_budget.py",
    # Timing past every limit, each a minute or more of waiting out ticks and locks:
    "tests/integration/test_hung_agents.py",
    "tests/integration/test_slow_init.py",
    "tests/integration/test_beat_leader.py",
    "tests/integration/test_agent_e2e.py::test_a_frozen_holder_reaped_past_its_lock",
    "tests/integration/test_safety.py::test_storm_on_a_shared_storage_domain_recovers_in_capped_waves",
    "tests/hostagent/test_package.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tier's tests ``slow``."""
    for item in items:
        if item.nodeid.startswith(SLOW):
            item.add_marker(pytest.mark.slow)
