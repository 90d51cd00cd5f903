"""Pushed reports in bulk: an aggregator sends many hosts' reports in one call, one transaction.

The body is decoded by ``models.report_bulk`` (the envelope) and each report by
``models.report_wire.decode_report``: the one report definition (``ReportWire``), as for a single
push or a pulled report. Each report is judged on its own (the caller may push for its host, the
host is known, it is listed once, it decodes); the accepted ones are stored together and every
refusal is audited as ``report_rejected`` in that same transaction. The answer says, per report,
accepted or refused with the field at fault.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autorecovery.adapters.store import PG_REPOS, Repos
from autorecovery.adapters.store.db import Database
from autorecovery.services import Clock
from models.domain import Report
from models.errors import BadReport
from models.report import DEFAULT_MAX_SKEW_S
from models.report_bulk import addressed_host, decode_bulk
from models.report_wire import decode_report

log = logging.getLogger(__name__)

_HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class ItemResult:
    """What became of one report of a bulk push."""

    index: int
    host_id: str | None
    accepted: bool
    error: str | None = None
    field: str | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Present the result as JSON."""
        return {
            "index": self.index,
            "host_id": self.host_id,
            "status": "accepted" if self.accepted else "refused",
            "error": self.error,
            "field": self.field,
            "message": self.message,
        }


def _refused(index: int, host_id: str | None, error: str, field: str, message: str) -> ItemResult:
    return ItemResult(index, host_id, False, error, f"reports[{index}].{field}", message)


class ReportIntake:
    """Validate and store many pushed reports in one transaction."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        repos: Repos = PG_REPOS,
        *,
        max_clock_skew_s: float = DEFAULT_MAX_SKEW_S,
    ) -> None:
        self.db = db
        self.clock = clock
        self.repos = repos
        self.max_clock_skew_s = max_clock_skew_s

    def receive_many(
        self, body: bytes, actor: str, may_report: Callable[[str], bool]
    ) -> tuple[list[ItemResult], int]:
        """Judge each report of a raw bulk body and store the accepted ones.

        A report older than the one stored is accepted but not stored (as for a single push).

        Returns:
            One result per report, in the order sent, and how many reports were stored.

        Raises:
            InvalidInput: the envelope is unusable (naming ``body`` or ``reports``); nothing is written.
        """
        bodies = decode_bulk(body)
        now = self.clock()
        results: list[ItemResult | None] = [None] * len(bodies)
        claimed: dict[str, int] = {}
        for index, item in enumerate(bodies):
            raw = addressed_host(item)
            if not isinstance(raw, str) or not _HOST_ID.fullmatch(raw):
                results[index] = _refused(index, None, "invalid_input", "host_id", "must be a host id")
            elif not may_report(raw):
                results[index] = _refused(
                    index, raw, "forbidden", "host_id", f"token {actor!r} may not push reports for this host"
                )
            elif raw in claimed:
                results[index] = _refused(
                    index, raw, "invalid_input", "host_id", f"listed twice (also reports[{claimed[raw]}])"
                )
            else:
                claimed[raw] = index
        accepted: list[Report] = []
        with self.db.transaction() as conn:
            known = self.repos.hosts.existing_ids(conn, sorted(claimed))
            for host_id, index in claimed.items():
                if host_id not in known:
                    results[index] = _refused(index, host_id, "not_found", "host_id", "no such host")
                    continue
                try:
                    accepted.append(
                        decode_report(
                            bodies[index], host_id, now=now, max_skew_s=self.max_clock_skew_s, source="push"
                        )
                    )
                    results[index] = ItemResult(index, host_id, True)
                except BadReport as bad:
                    results[index] = _refused(index, host_id, "bad_report", bad.field, bad.message)
                    self.repos.audit.add(
                        conn,
                        at=now,
                        object_type="host",
                        object_id=host_id,
                        event="report_rejected",
                        actor=actor,
                        reason=bad.field,
                        details={"field": bad.field, "message": bad.message, "source": "push"},
                    )
            stored = self.repos.hosts.upsert_reports(conn, accepted, now)
        done = [r for r in results if r is not None]
        refused = sum(not r.accepted for r in done)
        if refused:
            log.warning("bulk push by %s: %d of %d report(s) refused", actor, refused, len(done))
        return done, stored
