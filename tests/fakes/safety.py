"""``autorecovery.adapters.store.safety`` in memory: pauses, the observer row, holds and incidents."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from models.safety import Pause, host_holds
from tests.fakes.memory import IN_FLIGHT, MemoryState, Repo, add_audit, json_time


def _pause(row: dict[str, Any]) -> Pause:
    return Pause(row["scope"], row["reason"], row["owner"], row["created_at"], row["expires_at"])


def _by_scope(st: MemoryState) -> dict[str, Pause]:
    return {scope: _pause(st.pauses[scope]) for scope in sorted(st.pauses)}


class MemorySafety(Repo):
    """``autorecovery.adapters.store.safety`` in memory."""

    def active_pauses(self, conn: Any, now: datetime) -> dict[str, Pause]:
        """Drop pauses that expired (auditing each as ended by itself) and return the rest by scope."""
        st = self._state(conn)
        for scope in sorted(st.pauses):
            row = st.pauses[scope]
            if row["expires_at"] is None or row["expires_at"] > now:
                continue
            del st.pauses[scope]
            add_audit(
                st,
                at=now,
                object_type="pause",
                object_id=scope,
                event="pause_expired",
                actor="auto",
                reason=row["reason"],
                details={"owner": row["owner"], "expires_at": json_time(row["expires_at"])},
            )
        return _by_scope(st)

    def list_pauses(self, conn: Any) -> dict[str, Pause]:
        """Return every stored pause by scope, expired or not (the tick drops expired ones)."""
        return _by_scope(self._state(conn))

    def set_pause(self, conn: Any, pause: Pause) -> None:
        """Create or replace the pause of a scope."""
        st = self._state(conn, plain=[pause.scope, pause.reason, pause.owner])
        st.pauses[pause.scope] = {
            "scope": pause.scope,
            "reason": pause.reason,
            "owner": pause.owner,
            "created_at": pause.created_at,
            "expires_at": pause.expires_at,
        }

    def lift_pause(self, conn: Any, scope: str) -> Pause | None:
        """Delete a scope's pause; return it, or None when there was none."""
        row = self._state(conn, plain=[scope]).pauses.pop(scope, None)
        return _pause(row) if row else None

    def observer_state(self, conn: Any) -> dict[str, Any]:
        """Return what the last tick saw: last full tick, gate, silent and observed hosts."""
        return dict(self._state(conn).observer)

    def record_observer(
        self, conn: Any, *, now: datetime, gate: str | None, silent: int, observed: int
    ) -> None:
        """Record a full tick: its time, its gate (None when activations were allowed), its counts."""
        st = self._state(conn, plain=[gate])
        st.observer.update(
            last_full_tick_at=now,
            gate=gate,
            silent_hosts=silent,
            observed_hosts=observed,
            updated_at=now,
        )

    def lock_admission(self, conn: Any) -> None:
        """Serialise admissions; memory transactions already run one at a time."""
        self._state(conn)

    def in_flight_by_cluster(self, conn: Any) -> dict[str, int]:
        """Return queued or running activations per cluster."""
        st = self._state(conn)
        counts: dict[str, int] = {}
        for act in st.activations.values():
            host = st.hosts.get(act["host_id"])
            if host is not None and act["state"] in IN_FLIGHT:
                counts[host["cluster_id"]] = counts.get(host["cluster_id"], 0) + 1
        return counts

    def queued_activations(self, conn: Any) -> int:
        """Return the host activations queued and not started yet."""
        return sum(1 for act in self._state(conn).activations.values() if act["state"] == "queued")

    def cluster_sizes(self, conn: Any) -> dict[str, int]:
        """Return the number of hosts per cluster."""
        counts: dict[str, int] = {}
        for host in self._state(conn).hosts.values():
            counts[host["cluster_id"]] = counts.get(host["cluster_id"], 0) + 1
        return counts

    def up_by_cluster(self, conn: Any) -> dict[str, int]:
        """Return the number of up hosts per cluster (clusters with none are left out)."""
        counts: dict[str, int] = {}
        for host in self._state(conn).hosts.values():
            if host["status"] == "up":
                counts[host["cluster_id"]] = counts.get(host["cluster_id"], 0) + 1
        return counts

    def record_failure(self, conn: Any, host_id: str, fence: int, next_attempt_at: datetime) -> int | None:
        """Count a failed automatic activation and set when to try next; return the failures."""
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        if host is None or host["fence"] != fence:
            return None
        host.update(failures=host["failures"] + 1, next_attempt_at=next_attempt_at)
        return int(host["failures"])

    def postpone(self, conn: Any, host_id: str, fence: int, next_attempt_at: datetime) -> bool:
        """Set when to try a host next (never sooner than set) without counting a failure."""
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        if host is None or host["fence"] != fence:
            return False
        was = host["next_attempt_at"]
        host["next_attempt_at"] = next_attempt_at if was is None else max(was, next_attempt_at)
        return True

    def failures_of(self, conn: Any, host_id: str) -> int:
        """Return a host's failed automatic activations in a row."""
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        return int(host["failures"]) if host else 0

    def clear_holds(
        self, conn: Any, host_id: str, *, quarantine: bool, now: datetime | None = None
    ) -> dict[str, Any] | None:
        """Reset a host's backoff (and with ``quarantine``, its quarantine); return what it was.

        Clearing the quarantine also restarts the flap count at ``now`` (the database's clock
        when None).
        """
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        if host is None:
            return None
        was = {k: host[k] for k in ("failures", "next_attempt_at", "quarantined_at", "quarantine_reason")}
        host.update(failures=0, next_attempt_at=None)
        if quarantine:
            host.update(
                quarantined_at=None,
                quarantine_reason=None,
                holds_cleared_at=now if now is not None else datetime.now(UTC),
            )
        return was

    def auto_ends_since(self, conn: Any, host_id: str, since: datetime) -> int:
        """Count a host's automatic activations that ended up or failed since ``since``, and since
        its holds were last cleared; not its first success ever (it was no recovery)."""
        st = self._state(conn, plain=[host_id])
        host = st.hosts.get(host_id)
        if host is None:
            return 0
        cleared = host["holds_cleared_at"]
        ups = [a for a in st.activations.values() if a["host_id"] == host_id and a["state"] == "done"]
        first = min(ups, key=lambda a: (a["queued_at"], a["id"]))["id"] if ups else None
        return sum(
            1
            for a in st.activations.values()
            if a["host_id"] == host_id
            and a["id"] != first
            and a["trigger"] == "auto"
            and a["state"] in ("done", "failed")
            and a.get("outcome") != "not_enqueued"
            and a["ended_at"] is not None
            and a["ended_at"] >= since
            and (cleared is None or a["ended_at"] > cleared)
        )

    def quarantine(self, conn: Any, host_id: str, now: datetime, reason: str) -> bool:
        """Put a host in quarantine unless it already is; return True when it was put there now."""
        host = self._state(conn, plain=[host_id, reason]).hosts.get(host_id)
        if host is None or host["quarantined_at"] is not None:
            return False
        host.update(quarantined_at=now, quarantine_reason=reason)
        return True

    def track_incidents(
        self, conn: Any, *, now: datetime, since: datetime, min_hosts: int
    ) -> list[dict[str, Any]]:
        """Open an incident where ``min_hosts`` of a cluster went out for one storage domain or
        network since ``since``; close those whose subject no host is out for any more.

        Like the one PostgreSQL statement, every part sees the incidents as they were before it.
        """
        st = self._state(conn)
        out_now: dict[tuple[str, str, str], list[int]] = {}
        for host in st.hosts.values():
            if host["status"] == "non_operational" and host["subject"] is not None:
                counts = out_now.setdefault((host["cluster_id"], host["reason"], host["subject"]), [0, 0])
                counts[0] += 1
                counts[1] += host["status_changed_at"] >= since
        out_subjects = {(cluster, subject) for cluster, _, subject in out_now}
        before = [i for i in st.incidents.values() if i["closed_at"] is None]
        open_subjects = {(i["cluster_id"], i["subject"]) for i in before}
        changes: list[dict[str, Any]] = []
        for (cluster, reason, subject), (n, recent) in sorted(out_now.items()):
            if recent < min_hosts or (cluster, subject) in open_subjects:
                continue
            open_subjects.add((cluster, subject))  # the unique index on open incidents
            st.incident_seq += 1
            st.incidents[st.incident_seq] = {
                "id": st.incident_seq,
                "cluster_id": cluster,
                "reason": reason,
                "subject": subject,
                "hosts": n,
                "opened_at": now,
                "closed_at": None,
            }
            changes.append(self._change("incident_opened", st.incidents[st.incident_seq]))
        for inc in before:
            if (inc["cluster_id"], inc["subject"]) not in out_subjects:
                inc["closed_at"] = now
                changes.append(self._change("incident_closed", inc))
        for change in changes:
            add_audit(
                st,
                at=now,
                object_type="cluster",
                object_id=change["cluster_id"],
                event=change["event"],
                actor="auto",
                reason=change["reason"],
                details={"incident": change["id"], "subject": change["subject"], "hosts": change["hosts"]},
            )
        return changes

    @staticmethod
    def _change(event: str, inc: dict[str, Any]) -> dict[str, Any]:
        keys = ("id", "cluster_id", "reason", "subject", "hosts")
        return {"event": event, **{k: inc[k] for k in keys}}

    def open_incidents(self, conn: Any) -> list[dict[str, Any]]:
        """Return the incidents still open."""
        rows = [i for i in self._state(conn).incidents.values() if i["closed_at"] is None]
        return copy.deepcopy(sorted(rows, key=lambda i: (i["opened_at"], i["id"])))

    def held_hosts(self, conn: Any, now: datetime, examples: int) -> list[dict[str, Any]]:
        """Count hosts by hold and status, whatever the status (``models.safety.host_holds``)."""
        from tests.fakes.store import host_rows_of  # the host rows live there (it imports this module)

        groups: dict[tuple[str, str], list[str]] = {}
        for row in host_rows_of(self._state(conn)):
            unwritable = row.report.state_unwritable if row.report else None
            for kind in host_holds(row.host, now, unwritable):
                groups.setdefault((kind, row.host.status.value), []).append(row.host.id)
        return [
            {"hold": hold, "status": status, "n": len(ids), "examples": ids[:examples]}
            for (hold, status), ids in sorted(groups.items())
        ]
