"""``autorecovery.adapters.store.storage`` in memory: storage domains and their fenced activations."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from psycopg import errors as pg_errors

from autorecovery.ports import DomainActivationRow
from models.domain import DomainStatus, StorageDomain
from tests.fakes.memory import IN_FLIGHT, MemoryState, Repo, add_audit, check, text_time


def _domain(row: dict[str, Any]) -> StorageDomain:
    return StorageDomain(
        id=row["id"],
        status=DomainStatus(row["status"]),
        autorecovery=row["autorecovery"],
        fence=row["fence"],
        last_seen_at=row["last_seen_at"],
        status_changed_at=row["status_changed_at"],
        detail=row["detail"],
    )


def _reaches(report: dict[str, Any], sd_id: str, fresh_after: datetime) -> bool:
    """A fresh answered report that says the domain is reachable (JSON ``true``) or repairable."""
    return (
        report["agent_reachable"]
        and report["reported_at"] >= fresh_after
        and (
            report["storage_domains"].get(sd_id) is True
            or f"storage_domain:{sd_id}" in report["repairable"]
        )
    )


def _busy(st: MemoryState, sd_id: str) -> bool:
    return any(a["sd_id"] == sd_id and a["state"] in IN_FLIGHT for a in st.sd_activations.values())


class MemoryStorage(Repo):
    """``autorecovery.adapters.store.storage`` in memory."""

    def ensure(self, conn: Any, sd_ids: Iterable[str], now: datetime) -> list[str]:
        """Register storage domains named by a cluster (active, autorecovery on); return new ones."""
        ids = sorted(set(sd_ids))
        if not ids:
            return []
        st = self._state(conn, plain=[ids])
        created = []
        for sd_id in ids:
            if sd_id in st.storage_domains:
                continue
            st.storage_domains[sd_id] = {
                "id": sd_id,
                "status": "active",
                "autorecovery": True,
                "fence": 0,
                "last_seen_at": now,
                "status_changed_at": now,
                "detail": None,
            }
            created.append(sd_id)
        return created

    def get(self, conn: Any, sd_id: str) -> StorageDomain | None:
        """Return one storage domain, or None."""
        row = self._state(conn, plain=[sd_id]).storage_domains.get(sd_id)
        return _domain(row) if row else None

    def all_domains(self, conn: Any) -> dict[str, StorageDomain]:
        """Return every storage domain by id."""
        st = self._state(conn)
        return {k: _domain(st.storage_domains[k]) for k in sorted(st.storage_domains)}

    def clusters_of(self, conn: Any, sd_id: str) -> list[str]:
        """Return the clusters a storage domain is attached to."""
        st = self._state(conn, plain=[sd_id])
        return sorted(cid for cid, c in st.clusters.items() if sd_id in c["storage_domains"])

    def set_autorecovery(self, conn: Any, sd_id: str, enabled: bool) -> bool:
        """Set a storage domain's autorecovery flag; False for an unknown domain."""
        row = self._state(conn, plain=[sd_id]).storage_domains.get(sd_id)
        if row is None:
            return False
        row["autorecovery"] = enabled
        return True

    def set_status(
        self,
        conn: Any,
        sd_id: str,
        status: str,
        detail: str | None,
        now: datetime,
        *,
        fence: int | None = None,
    ) -> bool:
        """Set a domain's status; with ``fence``, only while its fence is still that token."""
        row = self._state(conn, plain=[sd_id, status, detail]).storage_domains.get(sd_id)
        if row is None or (fence is not None and row["fence"] != fence):
            return False
        check("storage_domains.status", status)
        if row["status"] != status:
            row["status_changed_at"] = now
        if status == "active":
            row["last_seen_at"] = now
        row.update(status=status, detail=detail)
        return True

    def follow_monitoring(
        self, conn: Any, *, now: datetime, fresh_after: datetime, inactive_before: datetime
    ) -> list[dict[str, Any]]:
        """Update every domain from the latest reports in one statement, auditing each change."""
        st = self._state(conn)
        seen = {
            sd_id
            for host_id, report in st.reports.items()
            if st.hosts[host_id]["status"] == "up"
            for sd_id in report["storage_domains"]
            if _reaches(report, sd_id, fresh_after)
        }
        changes = []
        for sd_id in sorted(st.storage_domains):
            row = st.storage_domains[sd_id]
            old, last_seen, is_seen = row["status"], row["last_seen_at"], sd_id in seen
            new = old
            if old == "inactive" and is_seen and row["autorecovery"]:
                new = "active"
            elif old == "active" and not is_seen and (last_seen is None or last_seen < inactive_before):
                new = "inactive"
            if not is_seen and new == old:
                continue
            if is_seen:
                row["last_seen_at"] = now
            if new != old:
                row["status_changed_at"] = now
                if new == "active":
                    row["detail"] = "reached by an up host again"
                else:
                    since = text_time(last_seen) if last_seen is not None else "registration"
                    row["detail"] = f"no up host reached it since {since}"
                row["status"] = new
                add_audit(
                    st,
                    at=now,
                    object_type="storage_domain",
                    object_id=sd_id,
                    event="status_changed",
                    actor="auto",
                    reason=row["detail"],
                    details={"from": old, "to": new},
                )
                changes.append({"id": sd_id, "from_status": old, "to_status": new})
        return changes

    def reachable_inactive(self, conn: Any, fresh_after: datetime) -> list[str]:
        """Inactive domains with autorecovery on that some host's fresh report reaches again."""
        st = self._state(conn)
        return sorted(
            sd_id
            for sd_id, row in st.storage_domains.items()
            if row["status"] == "inactive"
            and row["autorecovery"]
            and any(_reaches(r, sd_id, fresh_after) for r in st.reports.values())
            and not _busy(st, sd_id)
        )

    def connect_targets(self, conn: Any, sd_id: str, fresh_after: datetime) -> list[dict[str, Any]]:
        """Hosts of the domain's clusters whose fresh report reaches it: up hosts first."""
        st = self._state(conn, plain=[sd_id])
        found = [
            {"id": h["id"], "agent_url": h["agent_url"], "status": h["status"]}
            for h in st.hosts.values()
            if sd_id in st.clusters[h["cluster_id"]]["storage_domains"]
            and h["status"] != "maintenance"
            and h["id"] in st.reports
            and _reaches(st.reports[h["id"]], sd_id, fresh_after)
        ]
        reaching = {h: r["storage_domains"].get(sd_id) is True for h, r in st.reports.items()}
        return sorted(found, key=lambda h: (h["status"] != "up", not reaching[h["id"]], h["id"]))

    def queue_activation(
        self, conn: Any, activation_id: str, sd_id: str, *, trigger: str, actor: str, now: datetime
    ) -> bool:
        """Queue a domain activation unless one is in flight; audited. True when queued."""
        st = self._state(conn, plain=[activation_id, sd_id, trigger, actor])
        check("trigger", trigger)
        if activation_id in st.sd_activations or (sd_id in st.storage_domains and _busy(st, sd_id)):
            return False  # ON CONFLICT DO NOTHING: the id, or the one-in-flight index
        if sd_id not in st.storage_domains:
            raise pg_errors.ForeignKeyViolation(
                f'insert on table "sd_activations" violates foreign key: storage domain {sd_id!r}'
            )
        st.sd_activations[activation_id] = {
            "id": activation_id,
            "sd_id": sd_id,
            "trigger": trigger,
            "actor": actor,
            "state": "queued",
            "fence": None,
            "outcome": None,
            "detail": None,
            "queued_at": self._db.clock(),  # the lease: the database's clock
            "started_at": None,
            "ended_at": None,
        }
        add_audit(
            st,
            at=now,
            object_type="storage_domain",
            object_id=sd_id,
            event="activation_queued",
            actor=actor,
            reason=trigger,
            details={"activation_id": activation_id},
        )
        return True

    def in_flight(self, conn: Any, sd_id: str) -> DomainActivationRow | None:
        """Return the domain's queued or running activation, or None."""
        for row in self._state(conn, plain=[sd_id]).sd_activations.values():
            if row["sd_id"] == sd_id and row["state"] in IN_FLIGHT:
                return self.get_activation(conn, row["id"])
        return None

    def get_activation(self, conn: Any, activation_id: str) -> DomainActivationRow | None:
        """Return one domain activation, or None."""
        row = self._state(conn, plain=[activation_id]).sd_activations.get(activation_id)
        if row is None:
            return None
        out = {"answer": None, "target": None, "deadline_at": None, **copy.deepcopy(row)}
        out["past_deadline"] = out["deadline_at"] is not None and out["deadline_at"] <= self._db.clock()
        return cast(DomainActivationRow, out)

    def begin_activation(self, conn: Any, activation_id: str, now: datetime | None = None) -> int | None:
        """Mark the activation sending and issue its fence (the domain's, bumped)."""
        st = self._state(conn, plain=[activation_id])
        row = st.sd_activations.get(activation_id)
        if row is None or row["state"] not in ("queued", "sending"):
            return None
        domain = st.storage_domains[row["sd_id"]]
        domain["fence"] += 1
        row.update(state="sending", fence=domain["fence"], started_at=self._db.clock())
        return int(domain["fence"])

    def mark_activation_sent(
        self, conn: Any, activation_id: str, *, fence: int, answer: str, target: str, hold_s: float
    ) -> bool:
        """Record a connect sent whose outcome is not known; it holds the domain for ``hold_s``."""
        row = self._state(conn, plain=[activation_id, answer, target]).sd_activations.get(activation_id)
        if row is None or row["state"] != "sending" or row["fence"] != fence:
            return False
        check("activations.answer", answer)
        deadline = self._db.clock() + timedelta(seconds=hold_s)
        row.update(state="sent", answer=answer, target=target, deadline_at=deadline)
        return True

    def abandon_for_maintenance(self, conn: Any, sd_id: str, now: datetime) -> str | None:
        """Abandon the domain's activation in flight and bump its fence; return its id, if any."""
        st = self._state(conn, plain=[sd_id])
        domain = st.storage_domains.get(sd_id)
        if domain is None:
            return None
        domain["fence"] += 1
        for row in st.sd_activations.values():
            if row["sd_id"] == sd_id and row["state"] in IN_FLIGHT:
                row.update(
                    state="abandoned",
                    outcome="maintenance",
                    ended_at=now,
                    detail="an admin put the domain in maintenance",
                )
                return str(row["id"])
        return None

    def finish_activation(
        self,
        conn: Any,
        activation_id: str,
        *,
        state: str,
        outcome: str,
        detail: str,
        now: datetime,
        fence: int | None,
    ) -> bool:
        """Close an in-flight domain activation; with ``fence``, only while it holds that token."""
        st = self._state(conn, plain=[activation_id, state, outcome, detail])
        row = st.sd_activations.get(activation_id)
        if row is None or row["state"] not in IN_FLIGHT or (fence is not None and row["fence"] != fence):
            return False
        if fence is None and (row["state"] != "queued" or row["fence"] is not None):
            return False
        check("activations.state", state)
        row.update(state=state, outcome=outcome, detail=detail, ended_at=now)
        return True

    def raise_fence(self, conn: Any, sd_id: str, fence: int, at_least: int) -> bool:
        """Move a domain's fence counter up to ``at_least`` while it is still ``fence``."""
        domain = self._state(conn, plain=[sd_id]).storage_domains.get(sd_id)
        if domain is None or domain["fence"] != fence:
            return False
        domain["fence"] = max(domain["fence"], at_least)
        return True

    def reap_activations(
        self, conn: Any, *, now: datetime, queued_ttl_s: float, running_ttl_s: float
    ) -> int:
        """Abandon domain activations with no result in time (the database's clock), bumping fences."""
        st = self._state(conn)
        queued_before = self._db.clock() - timedelta(seconds=queued_ttl_s)
        running_before = self._db.clock() - timedelta(seconds=running_ttl_s)
        bumped = 0
        for row in st.sd_activations.values():
            deadline = row.get("deadline_at")
            stale = (
                (row["state"] == "queued" and row["queued_at"] < queued_before)
                or (
                    row["state"] == "sending"
                    and row["started_at"] is not None
                    and row["started_at"] < running_before
                )
                or (row["state"] == "sent" and deadline is not None and deadline < running_before)
            )
            if not stale:
                continue
            row.update(state="abandoned", outcome="abandoned", ended_at=now)
            st.storage_domains[row["sd_id"]]["fence"] += 1
            bumped += 1
        return bumped
