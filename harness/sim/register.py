"""Register a running simulator's fleet (clusters and hosts with agent URLs) in the store."""

from __future__ import annotations

from typing import Any

from autorecovery.services.fleet import FleetService, HostSpec
from models.domain import Cluster
from models.errors import Conflict


def cluster_from_registration(data: dict[str, Any]) -> Cluster:
    """Build a Cluster from the registration shape of agent protocol v1."""
    return Cluster(
        id=data["id"],
        required_networks=frozenset(data.get("required_networks", [])),
        storage_domains=frozenset(data.get("storage_domains", [])),
        min_version=data.get("min_version", "0"),
        cpu_flags=frozenset(data.get("cpu_flags", [])),
    )


def register_fleet(
    service: FleetService, fleet: dict[str, Any], actor: str, *, skip_existing: bool = False
) -> int:
    """Register every cluster and host of ``fleet`` (``GET /control/fleet``); return hosts added.

    With ``skip_existing``, hosts already registered (a restarted demo) keep their state and are
    pointed at the simulator's current agent URLs.
    """
    for cluster in fleet["clusters"]:
        service.register_cluster(cluster_from_registration(cluster), actor)
    specs = [HostSpec(h["id"], h["cluster"], h["agent_url"]) for h in fleet["hosts"]]
    if not skip_existing:
        return len(service.register_hosts(specs, actor))
    added = 0
    for spec in specs:
        try:
            added += len(service.register_hosts([spec], actor))
        except Conflict:
            service.set_agent_url(spec.id, spec.agent_url, actor)
    return added
