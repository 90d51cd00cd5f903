"""Map database rows to domain objects and domain objects to JSON rows for batched writes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from autorecovery.ports import HostRow, HostState
from models.changes import report_digest
from models.domain import Cluster, Host, HostStatus, Report, RunningInit


def cluster_from_row(row: dict[str, Any]) -> Cluster:
    """Build a Cluster from a ``clusters`` row."""
    return Cluster(
        id=row["id"],
        required_networks=frozenset(row["required_networks"]),
        storage_domains=frozenset(row["storage_domains"]),
        min_version=row["min_version"],
        cpu_flags=frozenset(row["cpu_flags"]),
    )


#: Statuses by their stored value (a dict lookup, not an Enum call: a tick reads every host).
_STATUSES = {status.value: status for status in HostStatus}


def host_from_row(row: dict[str, Any]) -> Host:
    """Build a Host from a ``hosts`` row (with an optional ``in_flight`` column)."""
    return Host(
        id=row["id"],
        cluster_id=row["cluster_id"],
        agent_url=row["agent_url"],
        status=_STATUSES[row["status"]],
        reason=row["reason"],
        detail=row["detail"],
        autorecovery=row["autorecovery"],
        status_changed_at=row["status_changed_at"],
        fence=row["fence"],
        in_flight=bool(row.get("in_flight", False)),
        failures=row.get("failures", 0),
        next_attempt_at=row.get("next_attempt_at"),
        quarantined_at=row.get("quarantined_at"),
        error_until=row.get("error_until"),
        init_hold_until=row.get("init_hold_until"),
        adopt=bool(row.get("adopt", False)),
        agent_hold=row.get("agent_hold"),
        agent_state_id=row.get("agent_state_id"),
    )


def host_state_from_row(row: dict[str, Any]) -> HostState:
    """Build what the store keeps beside a Host from a ``hosts`` row."""
    return HostState(
        last_decision=row.get("last_decision"),
        last_decision_detail=row.get("last_decision_detail"),
        last_decision_at=row.get("last_decision_at"),
        quarantine_reason=row.get("quarantine_reason"),
        subject=row.get("subject"),
        report_received_at=row.get("r_received_at"),
        in_flight_id=row.get("in_flight_id"),
        last_clean_at=row.get("last_clean_at"),
        agent_hold_detail=row.get("agent_hold_detail"),
        report_heard_at=row.get("r_heard_at"),
        host_key=row.get("host_key"),
        report_digest=row.get("r_digest"),
        eval_key=row.get("eval_key"),
        eval_until=row.get("eval_until"),
        eval_code=row.get("eval_code"),
        eval_silent=row.get("eval_silent"),
    )


def host_row(row: dict[str, Any]) -> HostRow:
    """Build a HostRow from a ``hosts`` row joined with its latest report (``r_*`` columns)."""
    return HostRow(host_from_row(row), report_from_row(row), host_state_from_row(row))


def report_from_row(row: dict[str, Any]) -> Report | None:
    """Build the latest Report from ``r_*`` columns of a host row joined with ``reports``."""
    if row.get("r_reported_at") is None:
        return None
    return Report(
        host_id=row["id"],
        reported_at=row["r_reported_at"],
        agent_reachable=row["r_agent_reachable"],
        kvm=row["r_kvm"],
        version=row["r_version"],
        cpu_flags=frozenset(row["r_cpu_flags"]),
        networks=row["r_networks"],
        storage_domains=row["r_storage_domains"],
        vms_running=row["r_vms_running"],
        mem_free_mb=row["r_mem_free_mb"],
        error=row["r_error"],
        source=row["r_source"],
        init=_init_from_json(row.get("r_init")),
        repairable=frozenset(row.get("r_repairable") or ()),
        state_unwritable=row.get("r_state_unwritable"),
    )


def _init_from_json(data: dict[str, Any] | None) -> RunningInit | None:
    if data is None:
        return None
    started = data.get("started_at")
    return RunningInit(
        data["activation_id"], int(data["fence"]), datetime.fromisoformat(started) if started else None
    )


def _init_to_json(init: RunningInit | None) -> dict[str, Any] | None:
    if init is None:
        return None
    started = init.started_at.isoformat() if init.started_at else None
    return {"activation_id": init.activation_id, "fence": init.fence, "started_at": started}


def report_as_dict(report: Report) -> dict[str, Any]:
    """Present a Report as JSON for the API and the audit log."""
    return {
        "reported_at": report.reported_at.isoformat(),
        "source": report.source,
        "agent_reachable": report.agent_reachable,
        "kvm": report.kvm,
        "version": report.version,
        "cpu_flags": sorted(report.cpu_flags),
        "networks": dict(report.networks),
        "storage_domains": dict(report.storage_domains),
        "vms_running": report.vms_running,
        "mem_free_mb": report.mem_free_mb,
        "error": report.error,
        "repairable": sorted(report.repairable),
        "state_unwritable": report.state_unwritable,
    }


def report_to_json(report: Report, received_at: datetime) -> dict[str, Any]:
    """Turn a Report into one element of the JSON array that a batched upsert unpacks."""
    return {
        "host_id": report.host_id,
        "received_at": received_at.isoformat(),
        **report_as_dict(report),
        "init": _init_to_json(report.init),
        "digest": report_digest(report),
    }
