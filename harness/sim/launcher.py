"""A VM launcher that places VMs as a scheduler would, through the product's placement ranking.

For each VM it asks ``GET /api/v1/clusters/{id}/placement``, tries the hosts best first on the
simulator (``POST {agent}/vms``), moves to the next host when a launch fails (or its agent does
not answer within the simulator client's timeout: a host gone silent), and reports the
attempts to ``POST /api/v1/vm-runs``. A host that keeps failing VMs is charged, drops in the
ranking and, at the limit, goes to ``error``.
"""

from __future__ import annotations

import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)


@dataclass
class VmLauncher:
    """Places VMs in a loop; counts what it did."""

    api: httpx.Client
    sim: httpx.Client
    clusters: list[str]
    rng: random.Random = field(default_factory=random.Random)
    max_tries: int = 3
    launched: int = 0
    failed_attempts: int = 0

    def launch_one(self) -> dict[str, Any] | None:
        """Place one VM in a random cluster; return what the API said of the run, or None."""
        cluster = self.rng.choice(self.clusters)
        vm_id = f"vm-{uuid.uuid4().hex[:8]}"
        resp = self.api.get(f"/api/v1/clusters/{cluster}/placement")
        if resp.status_code != 200:
            log.warning("placement for %s: HTTP %s", cluster, resp.status_code)
            return None
        ranking = resp.json()["hosts"]
        attempts: list[dict[str, Any]] = []
        for entry in ranking[: self.max_tries]:
            host_id = entry["host_id"]
            try:
                answer = self.sim.post(f"/agents/{host_id}/vms", json={"vm_id": vm_id}).json()
            except httpx.TimeoutException:  # a host gone silent since the ranking: a failed start
                answer = {"ok": False, "error": "the host did not answer the VM start in time"}
            attempts.append({"host": host_id, "ok": bool(answer.get("ok")),
                             "error": answer.get("error")})
            if answer.get("ok"):
                self.launched += 1
                break
            self.failed_attempts += 1
        if not attempts:
            return None
        result = self.api.post("/api/v1/vm-runs", json={"vm_id": vm_id, "attempts": attempts})
        if result.status_code >= 400:
            log.warning("vm run %s refused: %s %s", vm_id, result.status_code, result.text[:200])
            return None
        body: dict[str, Any] = result.json()
        return body
