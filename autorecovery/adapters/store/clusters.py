"""Clusters and their requirements: part of the hosts repository (``hosts`` re-exports them)."""

from __future__ import annotations

from autorecovery.adapters.store.db import Conn, run
from autorecovery.adapters.store.rows import cluster_from_row
from models.domain import Cluster


def all_clusters(conn: Conn) -> dict[str, Cluster]:
    """Return every cluster by id."""
    rows = run(conn, "SELECT * FROM clusters ORDER BY id").fetchall()
    return {row["id"]: cluster_from_row(row) for row in rows}


def get_cluster(conn: Conn, cluster_id: str) -> Cluster | None:
    """Return one cluster, or None."""
    row = run(conn, "SELECT * FROM clusters WHERE id = %(id)s", {"id": cluster_id}).fetchone()
    return cluster_from_row(row) if row else None


def upsert_cluster(conn: Conn, cluster: Cluster) -> bool:
    """Create or update a cluster's requirements; return True when it was created."""
    row = run(
        conn,
        """
        INSERT INTO clusters (id, required_networks, storage_domains, min_version, cpu_flags)
        VALUES (%(id)s, %(nets)s, %(sds)s, %(ver)s, %(flags)s)
        ON CONFLICT (id) DO UPDATE SET required_networks = EXCLUDED.required_networks,
            storage_domains = EXCLUDED.storage_domains, min_version = EXCLUDED.min_version,
            cpu_flags = EXCLUDED.cpu_flags
        RETURNING (xmax = 0) AS created
        """,
        {
            "id": cluster.id,
            "nets": sorted(cluster.required_networks),
            "sds": sorted(cluster.storage_domains),
            "ver": cluster.min_version,
            "flags": sorted(cluster.cpu_flags),
        },
    ).fetchone()
    return bool(row and row["created"])


def delete_cluster(conn: Conn, cluster_id: str) -> str:
    """Delete a cluster that has no host; return ``deleted``, ``has_hosts`` or ``missing``."""
    row = run(
        conn, "SELECT id FROM clusters WHERE id = %(id)s FOR UPDATE", {"id": cluster_id}
    ).fetchone()
    if row is None:
        return "missing"
    # The FOR UPDATE above makes a concurrent insert_host into this cluster wait (its foreign
    # key check takes a share lock on the row), so the count cannot go stale before the delete.
    if run(conn, "SELECT 1 FROM hosts WHERE cluster_id = %(id)s LIMIT 1", {"id": cluster_id}).fetchone():
        return "has_hosts"
    # Its pause goes with it (pauses name their scope, no foreign key); incidents cascade.
    run(conn, "DELETE FROM pauses WHERE scope = %(id)s", {"id": cluster_id})
    run(conn, "DELETE FROM clusters WHERE id = %(id)s", {"id": cluster_id})
    return "deleted"
