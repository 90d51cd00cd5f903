"""Schemathesis over the API's own OpenAPI document: no generated request gets a 5xx.

A dedicated API process sends its activations to a broker database no worker reads, so the
generated hosts' agent URLs are never called. Examples are bounded and derandomised, so the run
is the same every time and part of the suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from autorecovery.services.fleet import HostSpec
from models.domain import Cluster
from tests.integration.api_fixtures import ApiServer, make_tokens, start_api
from tests.support.servers import Servers

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_api(servers: Servers, logs: Path) -> Iterator[ApiServer]:
    """An API process whose broker is the lock database: activations queue and stay there."""
    server = start_api(
        servers, logs, make_tokens(), name="api-fuzz", AUTORECOVERY_BROKER_URL=servers.redis_url
    )
    yield server
    server.stop()
    assert "Traceback" not in server.proc.log(), server.proc.log()[-6000:]


def _operations(base_url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=10)
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletes last, so that the other operations' examples find the seeded host.
    return sorted(operations, key=lambda op: op.method.upper() == "DELETE")


def _run(operation: Any, mode: GenerationMode, server: ApiServer, failures: list[str]) -> int:
    auth = {"Authorization": f"Bearer {server.tokens['alice']}"}
    checks = [*CHECKS, negative_data_rejection] if mode is GenerationMode.NEGATIVE else CHECKS
    calls = 0

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(operation.as_strategy(generation_mode=mode, headers=auth))
    def run(case: Any) -> None:
        nonlocal calls
        wait = case.query.get("wait_s") if case.query else None
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            case.query["wait_s"] = min(wait, 0.2)  # nothing runs activations here: do not wait
        response = case.call(base_url=server.base_url, headers=auth, timeout=30)
        calls += 1
        try:
            case.validate_response(response, checks=checks, headers=auth)
        except (AssertionError, FailureGroup) as exc:
            failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
        if 400 <= response.status_code < 500 and case.path.startswith("/api/"):
            body = response.json()
            if not {"error", "message", "field"} <= set(body):
                failures.append(f"{operation.label}: {response.status_code} without the error shape")

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, no body): only the positive run applies.
        assert mode is GenerationMode.NEGATIVE, operation.label
    return calls


@pytest.fixture
def no_pauses(deps: Any) -> Iterator[None]:
    """Remove the pauses, VM runs and storage domains the generated requests leave.

    The suite's cleanup empties the fleet's tables, not these.
    """
    yield
    with deps.db.transaction() as conn:
        conn.execute("DELETE FROM pauses")
        conn.execute("TRUNCATE vm_runs, charges, sd_activations, storage_domains CASCADE")


def test_generated_requests_never_get_a_server_error(
    fuzz_api: ApiServer, fleet_service: Any, no_pauses: None
) -> None:
    fleet_service.register_cluster(Cluster("c-1", frozenset({"mgmt"}), frozenset({"sd-1"})), "test")
    # Two hosts: the documented VM run (a failure on h-0001, then h-0002) is accepted (201).
    fleet_service.register_hosts(
        [HostSpec(h, "c-1", f"http://127.0.0.1:9/agents/{h}") for h in ("h-0001", "h-0002")], "test"
    )
    failures: list[str] = []
    calls = 0
    operations = _operations(fuzz_api.base_url)
    labels = {op.label for op in operations}
    assert len(operations) >= 31
    assert {
        "PUT /api/v1/pause",
        "DELETE /api/v1/pause",
        "GET /api/v1/pause",
        "PUT /api/v1/clusters/{cluster_id}/pause",
        "DELETE /api/v1/clusters/{cluster_id}/pause",
        "POST /api/v1/hosts/{host_id}/quarantine/clear",
        "POST /api/v1/hosts/{host_id}/backoff/reset",
        "GET /api/v1/safety",
        "POST /api/v1/vm-runs",
        "GET /api/v1/clusters/{cluster_id}/placement",
        "GET /api/v1/storage-domains",
        "GET /api/v1/storage-domains/{storage_domain_id}",
        "POST /api/v1/storage-domains/{storage_domain_id}/activate",
        "PUT /api/v1/storage-domains/{storage_domain_id}/autorecovery",
        "POST /api/v1/storage-domains/{storage_domain_id}/maintenance",
    } <= labels, labels
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            calls += _run(operation, mode, fuzz_api, failures)
    assert not failures, "\n\n".join(failures[:15])
    assert calls >= len(operations) * 5
