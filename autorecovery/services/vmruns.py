"""VM run results: charges for hosts that fail VMs others start, the error state, placement."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.services import Clock
from autorecovery.services.audit import Trail
from models.errors import InvalidInput, NotFound
from models.placement import Attempt, Weights, charged_hosts, error_until, rank, should_enter_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ErrorPolicy:
    """When failed VM launches put a host in error, and for how long."""

    charge_limit: int = 3
    charge_window_s: float = 1800.0
    error_period_s: float = 1800.0
    weights: Weights = Weights()


class VmRunService:
    """Records VM runs and ranks hosts for the next placement."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        policy: ErrorPolicy = ErrorPolicy(),  # noqa: B008
        repos: Repos = PG_REPOS,
    ) -> None:
        self.db = db
        self.clock = clock
        self.policy = policy
        self.repos = repos

    def record(self, vm_id: str, attempts: list[Attempt], actor: str) -> dict[str, Any]:
        """Store a VM run, charge the hosts it implicates, and put over-charged hosts in error.

        All or nothing: an unknown host in any attempt rejects the whole run.

        Raises:
            InvalidInput: no attempts, or an attempt names an unknown host (the field says which).
        """
        if not attempts:
            raise InvalidInput("attempts", "must list at least one attempt")
        now = self.clock()
        window_start = now - timedelta(seconds=self.policy.charge_window_s)
        charged = charged_hosts(attempts)
        with self.db.transaction() as conn:
            known = self.repos.vmruns.known_hosts(conn, [a.host_id for a in attempts])
            for i, attempt in enumerate(attempts):
                if attempt.host_id not in known:
                    raise InvalidInput(f"attempts[{i}].host", f"unknown host {attempt.host_id!r}")
            run_id = self.repos.vmruns.add_run(conn, vm_id, attempts, actor, now)
            counts = self.repos.vmruns.add_charges(conn, run_id, vm_id, charged, now, window_start)
            over = [h for h, n in counts.items() if should_enter_error(n, self.policy.charge_limit)]
            until = error_until(now, self.policy.error_period_s)
            detail = (
                f"{self.policy.charge_limit} or more VMs failed here and started elsewhere "
                f"within {self.policy.charge_window_s:.0f}s"
            )
            errored = self.repos.vmruns.enter_error(conn, over, until, now, detail)
            trail = Trail(self.repos, conn, now, actor)
            for host_id, charges in counts.items():
                details = {"vm_id": vm_id, "vm_run": run_id, "charges_in_window": charges}
                trail.host(host_id, "charged", details, reason="vm_launch_failed")
        for host_id in errored:
            log.warning("host %s: error until %s: %s", host_id, until.isoformat(), detail)
        return {
            "vm_run": run_id,
            "vm_id": vm_id,
            "charged": counts,
            "errored": errored,
            "error_until": until.isoformat() if errored else None,
        }

    def placement(self, cluster_id: str) -> list[dict[str, Any]]:
        """Rank a cluster's up hosts best first, each score explained."""
        now = self.clock()
        with self.db.transaction() as conn:
            if self.repos.hosts.get_cluster(conn, cluster_id) is None:
                raise NotFound("cluster", cluster_id)
            rows = self.repos.hosts.list_hosts(conn, cluster_id=cluster_id, limit=100_000)
            charges = self.repos.vmruns.recent_charges(
                conn, now - timedelta(seconds=self.policy.charge_window_s), cluster_id
            )
        ranking = rank([(host, report) for host, report, _ in rows], charges, self.policy.weights)
        return [p.as_dict() for p in ranking]
