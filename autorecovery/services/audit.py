"""Audit entries in one line each: ``Trail(repos, conn, now, actor).host(host_id, event, details)``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from autorecovery.ports import Repos

if TYPE_CHECKING:
    from autorecovery.adapters.store.db import Conn

Details = Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class Trail:
    """Writes audit entries in the caller's transaction, at one time, for one actor."""

    repos: Repos
    conn: Conn
    at: datetime
    actor: str

    def add(self, object_type: str, object_id: str, event: str, details: Details, reason: str | None) -> None:
        """Append one entry about any kind of object."""
        self.repos.audit.add(
            self.conn,
            at=self.at,
            object_type=object_type,
            object_id=object_id,
            event=event,
            actor=self.actor,
            reason=reason,
            details=dict(details or {}),
        )

    def host(self, host_id: str, event: str, details: Details = None, *, reason: str | None = None) -> None:
        """Append an entry about a host."""
        self.add("host", host_id, event, details, reason)

    def cluster(
        self, cluster_id: str, event: str, details: Details = None, *, reason: str | None = None
    ) -> None:
        """Append an entry about a cluster."""
        self.add("cluster", cluster_id, event, details, reason)

    def storage_domain(
        self, sd_id: str, event: str, details: Details = None, *, reason: str | None = None
    ) -> None:
        """Append an entry about a storage domain."""
        self.add("storage_domain", sd_id, event, details, reason)

    def pause(self, scope: str, event: str, details: Details = None, *, reason: str | None = None) -> None:
        """Append an entry about a pause (scope ``fleet`` or a cluster id)."""
        self.add("pause", scope, event, details, reason)
