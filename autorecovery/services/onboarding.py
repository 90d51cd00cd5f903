"""Onboarding and day-2: register many hosts at once (checked first, all or nothing), delete clusters.

Registering one host stays ``FleetService.register_hosts``; this module adds what a fleet's
import needs: every problem of a batch found and named before anything is written (a dry run
gives the same list), and deleting a cluster once it has no host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.services import Clock
from autorecovery.services.fleet import HostSpec
from models.errors import Conflict, NotFound
from models.safety import FLEET

log = logging.getLogger(__name__)

Register = Callable[[list[HostSpec], str], list[str]]


@dataclass(frozen=True, slots=True)
class SpecProblem:
    """Why one host of a batch cannot be registered."""

    index: int
    field: str
    message: str
    #: What kind of problem: ``taken`` (registered already), ``repeated`` or ``unknown_cluster``.
    code: str

    def as_dict(self) -> dict[str, Any]:
        """Present the problem as JSON, naming the field as ``hosts[i].field``."""
        return {
            "index": self.index,
            "field": f"hosts[{self.index}].{self.field}",
            "code": self.code,
            "message": self.message,
        }


class OnboardingService:
    """Batch registration and cluster deletion, each one transaction."""

    def __init__(self, db: Database, clock: Clock, register: Register, repos: Repos = PG_REPOS) -> None:
        self.db = db
        self.clock = clock
        self.register = register
        self.repos = repos

    def check_hosts(self, specs: Sequence[HostSpec]) -> list[SpecProblem]:
        """Return every problem of the batch (ids taken or repeated, unknown clusters); write nothing."""
        problems: list[SpecProblem] = []
        with self.db.transaction() as conn:
            clusters = self.repos.hosts.all_clusters(conn)
            taken = self.repos.hosts.existing_ids(conn, sorted({s.id for s in specs}))
        first: dict[str, int] = {}
        for index, spec in enumerate(specs):
            if spec.id in taken:
                problems.append(SpecProblem(index, "id", f"host {spec.id!r} is already registered", "taken"))
            elif spec.id in first:
                problems.append(
                    SpecProblem(index, "id", f"is listed twice (also hosts[{first[spec.id]}])", "repeated")
                )
            first.setdefault(spec.id, index)
            if spec.cluster not in clusters:
                problems.append(
                    SpecProblem(index, "cluster", f"unknown cluster {spec.cluster!r}", "unknown_cluster")
                )
        return problems

    def register_batch(self, specs: Sequence[HostSpec], actor: str) -> tuple[list[str], list[SpecProblem]]:
        """Register every host of the batch, or none when any has a problem (all of them returned).

        Raises:
            Conflict, InvalidInput: a host registered or a cluster deleted since the check.
        """
        problems = self.check_hosts(specs)
        if problems:
            return [], problems
        created = self.register(list(specs), actor)
        log.info("%d host(s) registered by %s (%d adopted)", len(created), actor, sum(s.adopt for s in specs))
        return created, []

    def delete_cluster(self, cluster_id: str, actor: str) -> None:
        """Delete a cluster with no host (its pause goes with it), audited.

        Raises:
            NotFound: unknown cluster.
            Conflict: the cluster still has hosts (``hosts`` says that it has).
        """
        if cluster_id == FLEET:
            raise NotFound("cluster", cluster_id)
        now = self.clock()
        with self.db.transaction() as conn:
            outcome = self.repos.hosts.delete_cluster(conn, cluster_id)
            if outcome == "missing":
                raise NotFound("cluster", cluster_id)
            if outcome == "has_hosts":
                raise Conflict(
                    f"cluster {cluster_id} still has hosts; delete or move them first",
                    {"cluster_id": cluster_id, "has_hosts": True},
                )
            self.repos.audit.add(
                conn,
                at=now,
                object_type="cluster",
                object_id=cluster_id,
                event="cluster_deleted",
                actor=actor,
                details={},
            )
        log.info("cluster %s: deleted by %s", cluster_id, actor)
