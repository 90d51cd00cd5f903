"""The hosts, activations and audit repositories in memory, and ``memory_repos``.

``memory_repos(db)`` returns a ``Repos`` whose ``hosts``, ``activations``, ``audit`` and ``safety``
objects implement every function of ``autorecovery/adapters/store/{hosts,activations,audit,safety}.py``
with the same signatures and guards. Rows go through the product's own row mappers
(``autorecovery.adapters.store.rows``) so that the fake returns exactly what the PostgreSQL repositories
return. ``tests/contract`` runs one set of tests against both, so the two cannot drift.

Ids are ordered by code point, as under PostgreSQL's ``C`` collation.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import errors as pg_errors

from autorecovery.adapters.store.hosts import (
    _NOT_EVALUATED as NOT_EVALUATED,
)
from autorecovery.adapters.store.hosts import _window_params as window_params
from autorecovery.adapters.store.rows import cluster_from_row, host_row, report_to_json
from autorecovery.ports import BatchHost, HostRow, Repos
from autorecovery.ports.rows import (
    ActivationRow,
    BatchWindow,
    Evaluated,
    FencePush,
    SettledCount,
    StepRow,
)
from models.changes import evaluation_key
from models.domain import Cluster, HostStatus, Report
from models.policy import Decision, Transition
from models.safety import is_observed, silent_examples
from tests.fakes.memory import (
    IN_FLIGHT,
    INT4_MAX,
    MemoryDatabase,
    MemoryState,
    Repo,
    add_audit,
    as_json,
    check,
    in_flight_hosts,
)
from tests.fakes.retention import MemoryRetention
from tests.fakes.safety import MemorySafety
from tests.fakes.storage import MemoryStorage
from tests.fakes.ticks import MemoryTicks
from tests.fakes.vmruns import MemoryVmRuns

#: Columns of a host as ``autorecovery.adapters.store.hosts`` selects them, before ``in_flight``.
HOST_COLUMNS = (
    "id",
    "cluster_id",
    "agent_url",
    "status",
    "reason",
    "detail",
    "autorecovery",
    "status_changed_at",
    "fence",
    "last_decision",
    "last_decision_detail",
    "last_decision_at",
    "failures",
    "next_attempt_at",
    "quarantined_at",
    "quarantine_reason",
    "subject",
    "error_until",
    "init_hold_until",
    "adopt",
    "last_clean_at",
    "agent_hold",
    "agent_hold_detail",
    "agent_state_id",
)
#: Columns of ``reports`` that the host query joins as ``r_<column>``.
REPORT_COLUMNS = (
    "reported_at",
    "received_at",
    "source",
    "agent_reachable",
    "kvm",
    "version",
    "cpu_flags",
    "networks",
    "storage_domains",
    "vms_running",
    "mem_free_mb",
    "error",
    "init",
    "repairable",
    "heard_at",
    "state_unwritable",
)


def memory_repos(db: MemoryDatabase) -> Repos:
    """Return the repositories over ``db``, shaped like ``autorecovery.adapters.store.PG_REPOS``."""
    return Repos(
        hosts=MemoryHosts(db),
        activations=MemoryActivations(db),
        audit=MemoryAudit(db),
        safety=MemorySafety(db),
        storage=MemoryStorage(db),
        vmruns=MemoryVmRuns(db),
        ticks=MemoryTicks(db),
        retention=MemoryRetention(db),
    )


def _in_flight_id(st: MemoryState, host_id: str) -> str | None:
    return next(
        (a["id"] for a in st.activations.values() if a["host_id"] == host_id and a["state"] in IN_FLIGHT),
        None,
    )


def _host_key(st: MemoryState, h: dict[str, Any]) -> str:
    """The fake's hash of a host's row and activation in flight (any hash will do, consistently)."""
    kept = sorted((k, v) for k, v in h.items() if k not in NOT_EVALUATED)
    text = repr((kept, _in_flight_id(st, h["id"])))
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _host_rows(st: MemoryState, hosts: Sequence[dict[str, Any]], *, keyed: bool = False) -> list[HostRow]:
    busy = in_flight_hosts(st)
    out: list[HostRow] = []
    for h in hosts:
        row = {k: h[k] for k in HOST_COLUMNS}
        if keyed:
            report = st.reports.get(h["id"])
            row.update({name: h.get(name) for name in NOT_EVALUATED if name.startswith("eval_")})
            row.update(host_key=_host_key(st, h), r_digest=report.get("digest") if report else None)
        row["in_flight"] = h["id"] in busy
        row["in_flight_id"] = _in_flight_id(st, h["id"])
        report = st.reports.get(h["id"])
        for col in REPORT_COLUMNS:
            row["r_" + col] = report[col] if report else None
        row = copy.deepcopy(row)
        out.append(host_row(row))
    return out


def _batch_host(st: MemoryState, h: dict[str, Any]) -> BatchHost:
    """What ``batch_changed`` reads of a host: a few columns, no objects."""
    report = st.reports.get(h["id"])
    return BatchHost(
        h["id"],
        h["cluster_id"],
        h["status"],
        h["agent_url"],
        report["source"] if report else None,
        report["reported_at"] if report else None,
        report.get("digest") if report else None,
        _host_key(st, h),
        h.get("eval_key"),
        h.get("eval_until"),
        h.get("eval_code"),
        h.get("eval_silent"),
    )


def _sorted_hosts(st: MemoryState) -> list[dict[str, Any]]:
    return [st.hosts[k] for k in sorted(st.hosts)]


def host_rows_of(st: MemoryState) -> list[HostRow]:
    """Every host's row, ordered by id."""
    return _host_rows(st, _sorted_hosts(st))


class MemoryHosts(Repo):
    """``autorecovery.adapters.store.hosts`` in memory."""

    def all_clusters(self, conn: Any) -> dict[str, Cluster]:
        """Return every cluster by id."""
        st = self._state(conn)
        return {k: cluster_from_row(st.clusters[k]) for k in sorted(st.clusters)}

    def get_cluster(self, conn: Any, cluster_id: str) -> Cluster | None:
        """Return one cluster, or None."""
        row = self._state(conn, plain=[cluster_id]).clusters.get(cluster_id)
        return cluster_from_row(row) if row else None

    def upsert_cluster(self, conn: Any, cluster: Cluster) -> bool:
        """Create or update a cluster's requirements; return True when it was created."""
        st = self._state(
            conn,
            plain=[
                cluster.id,
                cluster.min_version,
                cluster.required_networks,
                cluster.storage_domains,
                cluster.cpu_flags,
            ],
        )
        created = cluster.id not in st.clusters
        st.clusters[cluster.id] = {
            "id": cluster.id,
            "required_networks": sorted(cluster.required_networks),
            "storage_domains": sorted(cluster.storage_domains),
            "min_version": cluster.min_version,
            "cpu_flags": sorted(cluster.cpu_flags),
        }
        return created

    def insert_host(
        self, conn: Any, host_id: str, cluster_id: str, agent_url: str, now: datetime, *, adopt: bool = False
    ) -> bool:
        """Register a host (unassigned until its first report); return False when the id is taken."""
        st = self._state(conn, plain=[host_id, cluster_id, agent_url])
        if host_id in st.hosts:
            return False
        if cluster_id not in st.clusters:
            raise pg_errors.ForeignKeyViolation(
                f'insert on table "hosts" violates foreign key: cluster {cluster_id!r}'
            )
        st.hosts[host_id] = {
            "id": host_id,
            "cluster_id": cluster_id,
            "agent_url": agent_url,
            "status": "unassigned",
            "reason": None,
            "detail": "registered; waiting for the first report",
            "autorecovery": True,
            "adopt": adopt,
            "status_changed_at": now,
            "fence": 0,
            "last_decision": None,
            "last_decision_detail": None,
            "last_decision_at": None,
            "failures": 0,
            "next_attempt_at": None,
            "quarantined_at": None,
            "quarantine_reason": None,
            "holds_cleared_at": None,  # not selected: it only restarts the flap count
            "subject": None,
            "error_until": None,
            "agent_fence_pending": False,
            "last_decision_clean": None,
            "fence_push_failures": 0,
            "fence_push_after": None,
            "init_hold_until": None,
            "agent_hold": None,
            "agent_hold_detail": None,
            "agent_state_id": None,
            # Kept by a PostgreSQL trigger from the decisions (migration 0006); not faked.
            "last_clean_at": None,
        }
        return True

    def get_host(self, conn: Any, host_id: str, *, for_update: bool = False) -> HostRow | None:
        """Return a host with its latest report and raw row, or None."""
        st = self._state(conn, plain=[host_id])
        host = st.hosts.get(host_id)
        return _host_rows(st, [host])[0] if host else None

    def batch_between(self, conn: Any, lo: str, hi: str | None) -> list[HostRow]:
        """Return the hosts with ``lo <= id < hi`` (no upper bound when ``hi`` is None)."""
        st = self._state(conn, plain=[lo, hi])
        chosen = [h for h in _sorted_hosts(st) if h["id"] >= lo and (hi is None or h["id"] < hi)]
        return _host_rows(st, chosen)

    def batch_rows(self, conn: Any, host_ids: Sequence[str]) -> Callable[[], list[HostRow]]:
        """The whole rows of some hosts, with their keys, by id."""
        st = self._state(conn, plain=list(host_ids))
        wanted = set(host_ids)
        rows = _host_rows(st, [h for h in _sorted_hosts(st) if h["id"] in wanted], keyed=True)
        return lambda: rows

    def batch_changed(
        self, conn: Any, lo: str, hi: str | None, window: BatchWindow
    ) -> Callable[[], tuple[list[BatchHost], list[SettledCount]]]:
        """The hosts of a batch to evaluate, and the counts of the settled ones."""
        st = self._state(conn, plain=[lo, hi, window.tick_id])
        p = window_params(window)
        tick = st.ticks.get(window.tick_id)
        context = tick.get("context_key") if tick else None
        chosen = [h for h in _sorted_hosts(st) if h["id"] >= lo and (hi is None or h["id"] < hi)]
        changed: list[dict[str, Any]] = []
        counts: dict[str, list[Any]] = {}
        for h in chosen:
            r = st.reports.get(h["id"])
            settled = (
                r is not None
                and context is not None
                and r["source"] == "push"
                and p["pushed_after"] <= r["reported_at"] <= p["pushed_before"]
                and p["fresh_after"] <= r["reported_at"] <= p["fresh_before"]
                and h.get("eval_until") is not None
                and h["eval_until"] > p["later"]
                and h.get("eval_key") == evaluation_key(_host_key(st, h), r.get("digest"), context)
            )
            if not settled:
                changed.append(h)
                continue
            count = counts.setdefault(h["eval_code"], [0, 0, 0, []])
            observed = is_observed(HostStatus(h["status"]))
            count[0] += 1
            count[1] += observed
            if observed and h["eval_silent"]:
                count[2] += 1
                count[3] = silent_examples(count[3], [h["id"]])
        rows = [_batch_host(st, h) for h in changed]
        settled_counts = [SettledCount(code, *counts[code]) for code in sorted(counts)]
        return lambda: (rows, settled_counts)

    def record_evaluations(self, conn: Any, evaluated: Sequence[Evaluated]) -> None:
        """Keep the key, time and outcome of each host's evaluation."""
        if not evaluated:
            return
        st = self._state(conn, jsonb=[[e.host_id, e.key, e.code] for e in evaluated])
        for e in evaluated:
            host = st.hosts.get(e.host_id)
            if host is not None:
                host.update(eval_key=e.key, eval_until=e.until, eval_code=e.code, eval_silent=e.silent)

    def touch_reports(self, conn: Any, reports: Sequence[tuple[Report, str]], received_at: datetime) -> None:
        """Move the time (and counts) of stored reports whose assessed content is unchanged."""
        if not reports:
            return
        st = self._state(conn, jsonb=[[r.host_id, r.source] for r, _ in reports])
        for r, digest in reports:
            old = st.reports.get(r.host_id)
            if old is None or old.get("digest") != digest:
                continue
            if min(old["reported_at"], old["received_at"]) <= r.reported_at:
                old.update(
                    reported_at=r.reported_at,
                    received_at=received_at,
                    source=r.source,
                    vms_running=r.vms_running,
                    mem_free_mb=r.mem_free_mb,
                )

    def batch_after(self, conn: Any, after: str, limit: int) -> list[HostRow]:
        """Return the next ``limit`` hosts after id ``after``, with their latest reports."""
        st = self._state(conn, plain=[after])
        chosen = [h for h in _sorted_hosts(st) if h["id"] > after][:limit]
        return _host_rows(st, chosen)

    def list_hosts(
        self,
        conn: Any,
        *,
        status: str | None = None,
        cluster_id: str | None = None,
        autorecovery: bool | None = None,
        limit: int = 1000,
        after: str = "",
    ) -> list[HostRow]:
        """Return hosts matching the filters, ordered by id, ``limit`` after ``after``."""
        st = self._state(conn, plain=[after, status, cluster_id])
        chosen = [
            h
            for h in _sorted_hosts(st)
            if h["id"] > after
            and (status is None or h["status"] == status)
            and (cluster_id is None or h["cluster_id"] == cluster_id)
            and (autorecovery is None or h["autorecovery"] == autorecovery)
        ][:limit]
        return _host_rows(st, chosen)

    def queue_reports(self, conn: Any, reports: Sequence[Report], received_at: datetime) -> Callable[[], int]:
        """``upsert_reports``, read later."""
        written = self.upsert_reports(conn, reports, received_at)
        return lambda: written

    def upsert_reports(self, conn: Any, reports: Sequence[Report], received_at: datetime) -> int:
        """Store the latest report of many hosts in one statement; never replace a newer one."""
        if not reports:
            return 0
        payload = [report_to_json(r, received_at) for r in reports]
        st = self._state(conn, jsonb=payload)
        rows = []
        for data in payload:
            for name in ("vms_running", "mem_free_mb"):  # every row is typed before the join
                if not -INT4_MAX - 1 <= data[name] <= INT4_MAX:
                    raise pg_errors.NumericValueOutOfRange(f"value {data[name]} out of range for integer")
            if data["host_id"] in st.hosts:  # the statement joins hosts
                rows.append(data)
        ids = [r["host_id"] for r in rows]
        if len(ids) != len(set(ids)):
            raise pg_errors.CardinalityViolation(
                "ON CONFLICT DO UPDATE command cannot affect row a second time"
            )
        written = 0
        for data in rows:
            new = {
                "reported_at": datetime.fromisoformat(data["reported_at"]),
                "received_at": datetime.fromisoformat(data["received_at"]),
                "source": data["source"],
                "agent_reachable": data["agent_reachable"],
                "kvm": data["kvm"],
                "version": data["version"],
                "cpu_flags": list(data["cpu_flags"]),
                "networks": as_json(data["networks"]),
                "storage_domains": as_json(data["storage_domains"]),
                "vms_running": data["vms_running"],
                "mem_free_mb": data["mem_free_mb"],
                "error": data["error"],
                "init": as_json(data["init"]),
                "digest": data["digest"],
                "repairable": list(data["repairable"]),
                "state_unwritable": data["state_unwritable"],
            }
            old = st.reports.get(data["host_id"])
            # Migration 0010's trigger: when the agent last answered with a usable report.
            new["heard_at"] = new["reported_at"] if new["agent_reachable"] else (old or {}).get("heard_at")
            if old is None or min(old["reported_at"], old["received_at"]) <= new["reported_at"]:
                st.reports[data["host_id"]] = new
                written += 1
        return written

    def apply_transitions(
        self, conn: Any, changes: Sequence[Transition], now: datetime, actor: str
    ) -> list[str]:
        """Apply status changes guarded by the expected status, auditing each; return changed ids."""
        if not changes:
            return []
        st = self._state(
            conn,
            plain=[actor],
            jsonb=[
                [c.host_id, c.expected.value, c.status.value, c.reason, c.detail, c.subject] for c in changes
            ],
        )
        changed: list[str] = []
        for c in changes:
            host = st.hosts.get(c.host_id)
            if host is None or host["status"] != c.expected.value or c.host_id in changed:
                continue
            if host["status"] != c.status.value:
                host["status_changed_at"] = now
            host.update(status=c.status.value, reason=c.reason, detail=c.detail, subject=c.subject)
            add_audit(
                st,
                at=now,
                object_type="host",
                object_id=c.host_id,
                event="status_changed",
                actor=actor,
                reason=c.reason,
                details={"from": c.expected.value, "to": c.status.value, "detail": c.detail},
            )
            changed.append(c.host_id)
        return changed

    def queue_transitions(
        self, conn: Any, changes: Sequence[Transition], now: datetime, actor: str
    ) -> Callable[[], list[str]]:
        """``apply_transitions``, read later."""
        changed = self.apply_transitions(conn, changes, now, actor)
        return lambda: changed

    def record_decisions(self, conn: Any, decisions: Sequence[Decision], now: datetime) -> Callable[[], int]:
        """Store each host's latest decision, writing only those that changed; how many, read later."""
        if not decisions:
            return lambda: 0
        st = self._state(conn, jsonb=[[d.host_id, d.code, d.detail] for d in decisions])
        written: set[str] = set()
        for d in decisions:
            host = st.hosts.get(d.host_id)
            if host is None or d.host_id in written:
                continue
            if host["last_decision"] != d.code or host["last_decision_detail"] != d.detail:
                host.update(
                    last_decision=d.code,
                    last_decision_detail=d.detail,
                    last_decision_clean=d.is_clean,
                    last_decision_at=now,
                )
                written.add(d.host_id)
        return lambda: len(written)

    def set_autorecovery(self, conn: Any, host_id: str, enabled: bool) -> bool | None:
        """Set a host's autorecovery flag; return the previous value, or None for an unknown host."""
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        if host is None:
            return None
        previous = bool(host["autorecovery"])
        host["autorecovery"] = enabled
        return previous

    def set_status(
        self,
        conn: Any,
        host_id: str,
        status: str,
        reason: str | None,
        detail: str | None,
        now: datetime,
        *,
        fence: int | None = None,
    ) -> bool:
        """Set a host's status; with ``fence``, only while the host's fence is still that token."""
        host = self._state(conn, plain=[host_id, status, reason, detail]).hosts.get(host_id)
        if host is None or (fence is not None and host["fence"] != fence):
            return False
        check("hosts.status", status)
        if host["status"] != status:
            host["status_changed_at"] = now
        host.update(status=status, reason=reason, detail=detail, subject=None)
        return True

    def set_agent_url(self, conn: Any, host_id: str, agent_url: str) -> str | None:
        """Point a host at another agent URL; return the previous URL, or None for an unknown host."""
        host = self._state(conn, plain=[host_id, agent_url]).hosts.get(host_id)
        if host is None:
            return None
        previous = str(host["agent_url"])
        host["agent_url"] = agent_url
        return previous

    def raise_fence(self, conn: Any, host_id: str, fence: int, at_least: int) -> bool:
        """Move a host's fence counter up to ``at_least`` while it is still ``fence``; mark it."""
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        if host is None or host["fence"] != fence:
            return False
        host.update(fence=max(host["fence"], at_least), agent_fence_pending=True)
        return True

    def pending_fences(self, conn: Any, limit: int) -> list[FencePush]:
        """Return up to ``limit`` due hosts whose agent has not learnt their fence: new first."""
        st = self._state(conn)
        now = self._db.clock()
        due = [
            h
            for h in _sorted_hosts(st)
            if h["agent_fence_pending"] and (h["fence_push_after"] is None or h["fence_push_after"] <= now)
        ]
        due.sort(key=lambda h: (h["fence_push_after"] is not None, h["fence_push_after"] or now, h["id"]))
        return [FencePush(h["id"], h["agent_url"], int(h["fence"])) for h in due[:limit]]

    def clear_fence_pending(self, conn: Any, pushed: Sequence[FencePush]) -> int:
        """Clear the mark (and backoff) of hosts whose agent learnt the fence, unless it moved on."""
        if not pushed:
            return 0
        st = self._state(conn, jsonb=[[p.host_id, p.fence] for p in pushed])
        cleared = 0
        for p in pushed:
            host = st.hosts.get(p.host_id)
            if host is not None and host["fence"] == p.fence and host["agent_fence_pending"]:
                host.update(agent_fence_pending=False, fence_push_failures=0, fence_push_after=None)
                cleared += 1
        return cleared

    def fence_push_failed(
        self, conn: Any, failed: Sequence[str], backoff_s: float, backoff_max_s: float
    ) -> int:
        """Ask these hosts' agents again after a doubling backoff, up to a maximum."""
        st = self._state(conn, plain=list(failed))
        marked = 0
        for host_id in failed:
            host = st.hosts.get(host_id)
            if host is None or not host["agent_fence_pending"]:
                continue
            wait_s = min(backoff_max_s, backoff_s * 2 ** min(host["fence_push_failures"], 30))
            host["fence_push_failures"] += 1
            host["fence_push_after"] = self._db.clock() + timedelta(seconds=wait_s)
            marked += 1
        return marked

    def hold_init(self, conn: Any, host_id: str, until: datetime) -> bool:
        """Give a host no new init before ``until``; never shortens a hold."""
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        if host is None:
            return False
        held = host["init_hold_until"]
        host["init_hold_until"] = until if held is None else max(held, until)
        return True

    def issued_fence(self, conn: Any, host_id: str) -> int | None:
        """The highest fence the product ever issued for a host, or None: no such host."""
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        return None if host is None else int(host["fence"])

    def hold_agent(self, conn: Any, host_id: str, hold: str, detail: str) -> bool:
        """Hold a host for a security event until an admin clears it; True when newly held."""
        host = self._state(conn, plain=[host_id, hold, detail]).hosts.get(host_id)
        if host is None or host["agent_hold"] is not None:
            return False
        host.update(agent_hold=hold, agent_hold_detail=detail)
        return True

    def clear_agent_hold(self, conn: Any, host_id: str) -> bool:
        """Clear a host's security hold and forget its agent state."""
        host = self._state(conn, plain=[host_id]).hosts.get(host_id)
        if host is None or host["agent_hold"] is None:
            return False
        host.update(agent_hold=None, agent_hold_detail=None, agent_state_id=None)
        return True

    def set_agent_state(self, conn: Any, host_id: str, state_id: str) -> None:
        """Record the agent state that has learnt the product's fence."""
        host = self._state(conn, plain=[host_id, state_id]).hosts.get(host_id)
        if host is not None:
            host["agent_state_id"] = state_id

    def delete_host(self, conn: Any, host_id: str) -> bool:
        """Delete a host with no activation in flight; return True when deleted."""
        st = self._state(conn, plain=[host_id])
        if host_id not in st.hosts or host_id in in_flight_hosts(st):
            return False
        del st.hosts[host_id]
        st.reports.pop(host_id, None)  # ON DELETE CASCADE
        for charge_id in [k for k, c in st.charges.items() if c["host_id"] == host_id]:
            del st.charges[charge_id]
        for activation_id in [k for k, a in st.activations.items() if a["host_id"] == host_id]:
            del st.activations[activation_id]
        return True

    def count_by_status(self, conn: Any) -> dict[str, int]:
        """Return the number of hosts in each status."""
        counts: dict[str, int] = {}
        for host in self._state(conn).hosts.values():
            counts[host["status"]] = counts.get(host["status"], 0) + 1
        return counts

    def existing_ids(self, conn: Any, host_ids: Sequence[str]) -> set[str]:
        """Return which of ``host_ids`` are registered."""
        st = self._state(conn, plain=list(host_ids))
        return {h for h in host_ids if h in st.hosts}

    def delete_cluster(self, conn: Any, cluster_id: str) -> str:
        """Delete a cluster that has no host; return ``deleted``, ``has_hosts`` or ``missing``."""
        st = self._state(conn, plain=[cluster_id])
        if cluster_id not in st.clusters:
            return "missing"
        if any(h["cluster_id"] == cluster_id for h in st.hosts.values()):
            return "has_hosts"
        del st.clusters[cluster_id]
        st.pauses.pop(cluster_id, None)
        for key in [k for k, i in st.incidents.items() if i["cluster_id"] == cluster_id]:
            del st.incidents[key]
        return "deleted"


ACTIVATION_DEFAULTS = {
    "answer": None,
    "protocol": None,
    "was_status": None,
    "deadline_at": None,
    "check_task_id": None,
}


def _activation(row: dict[str, Any], now: datetime) -> ActivationRow:
    deadline = row.get("deadline_at")
    full = {**ACTIVATION_DEFAULTS, **row, "past_deadline": deadline is not None and deadline <= now}
    return ActivationRow(**{k: full[k] for k in ActivationRow.__dataclass_fields__})


class MemoryActivations(Repo):
    """``autorecovery.adapters.store.activations`` in memory."""

    def create_many(
        self,
        conn: Any,
        items: Sequence[tuple[str, str]],
        *,
        trigger: str,
        actor: str,
        now: datetime,
        statuses: Sequence[str],
        reason: str,
    ) -> list[tuple[str, str]]:
        """Queue activations for (activation_id, host_id) pairs in one statement, auditing each."""
        if not items:
            return []
        st = self._state(conn, plain=[trigger, actor, reason, list(statuses)], jsonb=[list(items)])
        check("trigger", trigger)
        busy = in_flight_hosts(st)
        created: list[tuple[str, str]] = []
        for activation_id, host_id in items:
            host = st.hosts.get(host_id)
            if host is None or host["status"] not in statuses:
                continue
            if activation_id in st.activations or host_id in busy:
                continue  # ON CONFLICT DO NOTHING: the id, or the one-in-flight index
            st.activations[activation_id] = {
                "id": activation_id,
                "host_id": host_id,
                "trigger": trigger,
                "actor": actor,
                "state": "queued",
                "fence": None,
                "outcome": None,
                "reason": None,
                "detail": None,
                "queued_at": self._db.clock(),  # the lease: the database's clock
                "started_at": None,
                "ended_at": None,
                "sends": 1,
                "sent_at": self._db.clock(),
            }
            busy.add(host_id)
            add_audit(
                st,
                at=now,
                object_type="host",
                object_id=host_id,
                event="activation_queued",
                actor=actor,
                reason=reason,
                details={"activation_id": activation_id, "trigger": trigger},
            )
            created.append((activation_id, host_id))
        return created

    def get(self, conn: Any, activation_id: str) -> ActivationRow | None:
        """Return one activation, or None."""
        row = self._state(conn, plain=[activation_id]).activations.get(activation_id)
        return _activation(row, self._db.clock()) if row else None

    def in_flight(self, conn: Any, host_id: str) -> ActivationRow | None:
        """Return the host's queued or running activation, or None."""
        for row in self._state(conn, plain=[host_id]).activations.values():
            if row["host_id"] == host_id and row["state"] in IN_FLIGHT:
                return _activation(row, self._db.clock())
        return None

    def recent(self, conn: Any, host_id: str, limit: int = 10) -> list[ActivationRow]:
        """Return the host's latest activations, newest first."""
        rows = [r for r in self._state(conn, plain=[host_id]).activations.values() if r["host_id"] == host_id]
        rows.sort(key=lambda r: r["queued_at"], reverse=True)
        return [_activation(r, self._db.clock()) for r in rows[:limit]]

    def begin(self, conn: Any, activation_id: str, now: datetime | None = None) -> int | None:
        """Mark the activation sending and issue its fencing token (the host's fence, bumped)."""
        st = self._state(conn, plain=[activation_id])
        row = st.activations.get(activation_id)
        if row is None or row["state"] not in ("queued", "sending"):
            return None
        host = st.hosts.get(row["host_id"])
        if host is None:
            return None
        host["fence"] += 1
        row.update(state="sending", fence=host["fence"], started_at=self._db.clock())
        return int(host["fence"])

    def mark_sent(
        self,
        conn: Any,
        activation_id: str,
        *,
        fence: int,
        answer: str,
        protocol: int,
        hold_s: float,
        was_status: str | None = None,
    ) -> bool:
        """Record that the init went to the agent while the activation holds ``fence``."""
        row = self._state(conn, plain=[activation_id, answer, was_status]).activations.get(activation_id)
        if row is None or row["state"] != "sending" or row["fence"] != fence:
            return False
        check("activations.answer", answer)
        row.update(
            state="sent",
            answer=answer,
            protocol=protocol,
            was_status=was_status,
            deadline_at=self._db.clock() + timedelta(seconds=hold_s),
        )
        return True

    def note_was_status(
        self, conn: Any, activation_id: str, *, fence: int, was_status: str
    ) -> Callable[[], bool]:
        """Keep the host's status before its first ``initializing`` on the ``sending`` activation."""
        row = self._state(conn, plain=[activation_id, was_status]).activations.get(activation_id)
        if row is None or row["state"] != "sending" or row["fence"] != fence:
            return lambda: False
        if row.get("was_status") is None:
            row["was_status"] = was_status
        return lambda: True

    def unknown_streak(self, conn: Any, host_id: str) -> int:
        """Count the host's latest closed activations in a row that ended on the infrastructure."""
        rows = [a for a in self._state(conn, plain=[host_id]).activations.values() if a["host_id"] == host_id]
        ends = [
            a["ended_at"]
            for a in rows
            if a["state"] in ("done", "failed") and a["outcome"] != "not_enqueued" and a["ended_at"]
        ]
        since = max(ends) if ends else None
        return sum(
            1
            for a in rows
            if a["outcome"] in ("outcome_unknown", "fence_not_pushed")
            and (since is None or a["ended_at"] > since)
        )

    def add_step(
        self,
        conn: Any,
        activation_id: str,
        step: str,
        task_id: str | None,
        outcome: str,
        next_check: str | None = None,
    ) -> None:
        """Record one step of an activation (its task id and what it came to), and the next check."""
        st = self._state(conn, plain=[activation_id, step, task_id, outcome, next_check])
        if activation_id not in st.activations:
            return
        act = st.activations[activation_id]
        if next_check is not None and act["state"] == "sent":
            act["check_task_id"] = next_check
        st.activation_steps.append(
            {
                "activation_id": activation_id,
                "step": step,
                "task_id": task_id,
                "outcome": outcome[:200],
                "at": self._db.clock(),
            }
        )

    def steps(self, conn: Any, activation_ids: Sequence[str]) -> list[StepRow]:
        """Return the steps of these activations, oldest first."""
        wanted = set(activation_ids)
        return [StepRow(**s) for s in self._state(conn).activation_steps if s["activation_id"] in wanted]

    def finish(
        self,
        conn: Any,
        activation_id: str,
        *,
        state: str,
        outcome: str,
        reason: str | None,
        detail: str | None,
        now: datetime,
        fence: int | None,
    ) -> bool:
        """Close an in-flight activation; with ``fence``, only while it still holds that token."""
        row = self._state(conn, plain=[activation_id, state, outcome, reason, detail]).activations.get(
            activation_id
        )
        if row is None or row["state"] not in IN_FLIGHT:
            return False
        if fence is not None and row["fence"] != fence:
            return False
        if fence is None and (row["state"] != "queued" or row["fence"] is not None):
            return False  # without a token, only an activation that never began
        check("activations.state", state)
        row.update(state=state, outcome=outcome, reason=reason, detail=detail, ended_at=now)
        return True

    def reset_orphans(self, conn: Any, *, now: datetime, before: datetime) -> list[str]:
        """Return hosts left initializing with no activation in flight to non_operational."""
        st = self._state(conn)
        busy = {a["host_id"] for a in st.activations.values() if a["state"] in IN_FLIGHT}
        out = []
        for host_id in sorted(st.hosts):
            host = st.hosts[host_id]
            if (
                host["status"] == "initializing"
                and host["status_changed_at"] < before
                and host_id not in busy
            ):
                detail = "initializing with no activation in flight"
                host.update(
                    status="non_operational",
                    reason="activation_failed",
                    detail=detail,
                    status_changed_at=now,
                    subject=None,
                )
                host["fence"] += 1
                host["agent_fence_pending"] = True
                add_audit(
                    st,
                    at=now,
                    object_type="host",
                    object_id=host_id,
                    event="status_changed",
                    actor="auto",
                    reason="activation_failed",
                    details={"from": "initializing", "to": "non_operational", "detail": detail},
                )
                out.append(host_id)
        return out

    def reap(
        self,
        conn: Any,
        *,
        now: datetime,
        queued_ttl_s: float,
        running_ttl_s: float,
        init_hold_s: float = 0.0,
    ) -> list[dict[str, Any]]:
        """Abandon activations stuck queued or running too long (leases on the database's clock)."""
        st = self._state(conn)
        queued_before = self._db.clock() - timedelta(seconds=queued_ttl_s)
        running_before = self._db.clock() - timedelta(seconds=running_ttl_s)
        stale = [
            a
            for a in st.activations.values()
            if (a["state"] == "queued" and a["queued_at"] < queued_before)
            or (a["state"] == "sending" and a["started_at"] is not None and a["started_at"] < running_before)
            or (
                a["state"] == "sent"
                and a.get("deadline_at") is not None
                and a["deadline_at"] < running_before
            )
        ]
        out: list[dict[str, Any]] = []
        for a in stale:
            was = a["state"]
            a.update(
                state="abandoned", outcome="abandoned", ended_at=now, detail=f"no result in time (was {was})"
            )
            host = st.hosts.get(a["host_id"])
            if host is not None:
                host["fence"] += 1
                host["agent_fence_pending"] = host["agent_fence_pending"] or was != "queued"
                if host["status"] == "initializing":
                    host.update(
                        status="non_operational",
                        reason="activation_failed",
                        detail="activation abandoned: no result in time",
                        status_changed_at=now,
                    )
                    if was == "sending" and init_hold_s > 0:
                        until = now + timedelta(seconds=init_hold_s)
                        held = host.get("init_hold_until")
                        host["init_hold_until"] = until if held is None else max(held, until)
                        add_audit(
                            st,
                            at=now,
                            object_type="host",
                            object_id=a["host_id"],
                            event="init_held",
                            actor="auto",
                            reason="init_outcome_unknown",
                            details={"activation_id": a["id"], "until": until.isoformat()},
                        )
            add_audit(
                st,
                at=now,
                object_type="host",
                object_id=a["host_id"],
                event="activation_abandoned",
                actor="auto",
                reason="no_result_in_time",
                details={"activation_id": a["id"], "was": was},
            )
            out.append({"id": a["id"], "host_id": a["host_id"], "was": was})
        return out

    def mark_enqueue_failed(
        self, conn: Any, pairs: Sequence[tuple[str, str]], now: datetime, error: str
    ) -> None:
        """Close activations whose message never reached the broker, auditing each."""
        st = self._state(conn, plain=[[a for a, _ in pairs], error])
        for activation_id, _ in pairs:
            row = st.activations.get(activation_id)
            if row is None or row["state"] != "queued":
                continue
            row.update(state="failed", outcome="not_enqueued", detail=error, ended_at=now)
            add_audit(
                st,
                at=now,
                object_type="host",
                object_id=row["host_id"],
                event="activation_not_enqueued",
                actor=row["actor"],
                reason="broker_unavailable",
                details={"activation_id": activation_id, "error": error},
            )

    def resend_queued(
        self, conn: Any, *, now: datetime, after_s: float, max_resends: int
    ) -> list[dict[str, Any]]:
        """Count one more send of each activation queued unstarted since ``after_s`` ago, audited."""
        st = self._state(conn)
        before = self._db.clock() - timedelta(seconds=after_s)
        out: list[dict[str, Any]] = []
        for a in sorted(st.activations.values(), key=lambda a: str(a["id"])):
            if a["state"] != "queued" or a["sends"] > max_resends or a["sent_at"] >= before:
                continue
            a.update(sends=a["sends"] + 1, sent_at=self._db.clock())
            add_audit(
                st,
                at=now,
                object_type="host",
                object_id=a["host_id"],
                event="activation_resent",
                actor="auto",
                reason="not_started_in_time",
                details={"activation_id": a["id"], "sends": a["sends"]},
            )
            out.append({k: a[k] for k in ("id", "host_id", "trigger", "actor", "sends")})
        return out

    def resend_checks(self, conn: Any, *, now: datetime, after_s: float) -> list[dict[str, Any]]:
        """Give a new check step to each sent activation with no step for ``after_s``, audited."""
        st = self._state(conn)
        clock = self._db.clock()
        before = clock - timedelta(seconds=after_s)
        out: list[dict[str, Any]] = []
        for a in sorted(st.activations.values(), key=lambda a: str(a["id"])):
            if a["state"] != "sent":
                continue
            ats = [s["at"] for s in st.activation_steps if s["activation_id"] == a["id"]]
            last = max(ats) if ats else (a.get("started_at") or a["queued_at"])
            if last >= before:
                continue
            a.update(check_task_id=str(uuid.uuid4()), sends=a["sends"] + 1)
            st.activation_steps.append(
                {
                    "activation_id": a["id"],
                    "step": "check",
                    "task_id": a["check_task_id"],
                    "outcome": "resent: no step for a while",
                    "at": clock,
                }
            )
            add_audit(
                st,
                at=now,
                object_type="host",
                object_id=a["host_id"],
                event="activation_check_resent",
                actor="auto",
                reason="no_step_in_time",
                details={"activation_id": a["id"], "check_task_id": a["check_task_id"]},
            )
            out.append({k: a[k] for k in ("id", "host_id", "trigger", "actor", "check_task_id", "sends")})
        return out

    def count_by_outcome(self, conn: Any) -> list[dict[str, Any]]:
        """Count activations by trigger and outcome (the state while one has no outcome yet)."""
        counts: dict[tuple[str, str], int] = {}
        for row in self._state(conn).activations.values():
            key = (row["trigger"], row["outcome"] if row["outcome"] is not None else row["state"])
            counts[key] = counts.get(key, 0) + 1
        return [{"trigger": t, "outcome": o, "n": n} for (t, o), n in sorted(counts.items())]


class MemoryAudit(Repo):
    """``autorecovery.adapters.store.audit`` in memory."""

    def add(
        self,
        conn: Any,
        *,
        at: datetime,
        object_type: str,
        object_id: str,
        event: str,
        actor: str,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Append one audit entry in the caller's transaction."""
        st = self._state(conn, plain=[object_type, object_id, event, actor, reason], jsonb=[details or {}])
        add_audit(
            st,
            at=at,
            object_type=object_type,
            object_id=object_id,
            event=event,
            actor=actor,
            reason=reason,
            details=details,
        )

    def query(
        self,
        conn: Any,
        *,
        object_type: str | None = None,
        object_id: str | None = None,
        actor: str | None = None,
        event: str | None = None,
        since: datetime | None = None,
        before_id: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Return audit entries matching the filters, newest first, ``limit`` below ``before_id``."""
        st = self._state(conn, plain=[object_type, object_id, actor, event])
        found = (
            e
            for e in reversed(st.audit)
            if (object_type is None or e["object_type"] == object_type)
            and (object_id is None or e["object_id"] == object_id)
            and (actor is None or e["actor"] == actor)
            and (event is None or e["event"] == event)
            and (since is None or e["at"] >= since)
            and (before_id is None or e["id"] < before_id)
        )
        return copy.deepcopy(list(itertools.islice(found, limit)))
