"""``autorecovery.adapters.store.vmruns`` in memory: VM runs, the charges they lay on hosts, error."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import errors as pg_errors

from models.placement import Attempt
from tests.fakes.memory import Repo, add_audit, json_time


class MemoryVmRuns(Repo):
    """``autorecovery.adapters.store.vmruns`` in memory."""

    def add_run(self, conn: Any, vm_id: str, attempts: Sequence[Attempt], actor: str, now: datetime) -> int:
        """Store a VM run; return its id."""
        tried = [{"host": a.host_id, "ok": a.ok, "error": a.error} for a in attempts]
        st = self._state(conn, plain=[vm_id, actor], jsonb=[tried])
        st.vm_run_seq += 1
        st.vm_runs[st.vm_run_seq] = {
            "id": st.vm_run_seq,
            "vm_id": vm_id,
            "attempts": tried,
            "actor": actor,
            "received_at": now,
        }
        return st.vm_run_seq

    def add_charges(
        self,
        conn: Any,
        run_id: int,
        vm_id: str,
        charged: Sequence[Attempt],
        now: datetime,
        window_start: datetime,
    ) -> dict[str, int]:
        """Charge hosts for a run and return each charged host's charges within the window."""
        if not charged:
            return {}
        st = self._state(conn, plain=[vm_id], jsonb=[[a.host_id, a.error] for a in charged])
        for a in charged:
            if a.host_id not in st.hosts or run_id not in st.vm_runs:
                raise pg_errors.ForeignKeyViolation(
                    f'insert on table "charges" violates foreign key: host {a.host_id!r}, run {run_id}'
                )
        # The count reads the table as it was before the statement, plus the row it inserts.
        before = {
            a.host_id: sum(
                1 for c in st.charges.values() if c["host_id"] == a.host_id and c["at"] >= window_start
            )
            for a in charged
        }
        for a in charged:
            st.charge_seq += 1
            st.charges[st.charge_seq] = {
                "id": st.charge_seq,
                "host_id": a.host_id,
                "vm_run_id": run_id,
                "vm_id": vm_id,
                "error": a.error,
                "at": now,
            }
        return {host_id: n + 1 for host_id, n in before.items()}

    def recent_charges(self, conn: Any, since: datetime, cluster_id: str | None = None) -> dict[str, int]:
        """Return charges per host since ``since`` (older ones have decayed)."""
        st = self._state(conn, plain=[cluster_id])
        counts: dict[str, int] = {}
        for c in st.charges.values():
            host = st.hosts[c["host_id"]]
            if c["at"] >= since and (cluster_id is None or host["cluster_id"] == cluster_id):
                counts[c["host_id"]] = counts.get(c["host_id"], 0) + 1
        return counts

    def enter_error(
        self, conn: Any, host_ids: Sequence[str], until: datetime, now: datetime, detail: str
    ) -> list[str]:
        """Put up hosts in ``error`` until ``until``, auditing each; return those that changed."""
        if not host_ids:
            return []
        st = self._state(conn, plain=[list(host_ids), detail])
        changed = []
        for host_id in sorted(set(host_ids)):
            host = st.hosts.get(host_id)
            if host is None or host["status"] != "up":
                continue
            host.update(
                status="error",
                reason="vm_launch_failures",
                detail=detail,
                error_until=until,
                status_changed_at=now,
            )
            add_audit(
                st,
                at=now,
                object_type="host",
                object_id=host_id,
                event="status_changed",
                actor="auto",
                reason="vm_launch_failures",
                details={"from": "up", "to": "error", "detail": detail, "until": json_time(until)},
            )
            changed.append(host_id)
        return changed

    def clear_charges(self, conn: Any, host_id: str) -> int:
        """Forget a host's charges and its error period (it came back healthy)."""
        st = self._state(conn, plain=[host_id])
        if host_id in st.hosts:
            st.hosts[host_id]["error_until"] = None
        self._state(conn, plain=[host_id])  # a second statement, as in PostgreSQL
        gone = [k for k, c in st.charges.items() if c["host_id"] == host_id]
        for key in gone:
            del st.charges[key]
        return len(gone)

    def known_hosts(self, conn: Any, host_ids: Sequence[str]) -> set[str]:
        """Return which of ``host_ids`` are registered."""
        st = self._state(conn, plain=[list(host_ids)])
        return {h for h in host_ids if h in st.hosts}
