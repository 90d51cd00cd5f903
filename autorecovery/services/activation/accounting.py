"""What a host's activation result counts for: backoff, reset and flap quarantine.

Only real results count (done, failed); infrastructure outcomes (lock lost, gave up, outcome
unknown, busy) are never charged to the host. Repeated unknown outcomes still back an automatic
activation off as failures do (``defer_unknown``), without a charge: a host whose init always
outlasts the timeout is not sent a new init every ``init_max_s`` forever.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from autorecovery.adapters.store.db import Conn
from autorecovery.services.activation.kinds import HostStore, Run
from models.domain import HostStatus, Trigger
from models.safety import backoff_delay_s, is_flapping

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecoverySafety:
    """Backoff and flap limits applied when an automatic activation ends."""

    backoff_base_s: float = 10.0
    backoff_max_s: float = 3600.0
    flap_limit: int = 5
    flap_window_s: float = 3600.0


class Accounting:
    """Charges and resets after a host's activation, in the closing transaction."""

    def __init__(self, repos: HostStore, safety: RecoverySafety, rng: random.Random) -> None:
        self.repos = repos
        self.safety = safety
        self.rng = rng

    def settle(self, conn: Conn, run: Run, was: HostStatus, now: datetime, *, succeeded: bool) -> None:
        """Reset on success, back off on an automatic failure, and quarantine a flapping host."""
        if succeeded:
            self._reset(conn, run, was, now)
        elif run.trigger is Trigger.AUTO:
            self._back_off(conn, run, now)
        if run.trigger is Trigger.AUTO:
            self._check_flapping(conn, run.object_id, now)

    def _audit(
        self,
        conn: Conn,
        host_id: str,
        now: datetime,
        event: str,
        actor: str,
        reason: str,
        details: dict[str, Any],
    ) -> None:
        self.repos.audit.add(
            conn,
            at=now,
            object_type="host",
            object_id=host_id,
            event=event,
            actor=actor,
            reason=reason,
            details=details,
        )

    def _reset(self, conn: Conn, run: Run, was: HostStatus, now: datetime) -> None:
        host_id = run.object_id
        if was is HostStatus.ERROR:
            # Back from error, healthy: its charges are forgotten.
            cleared = self.repos.vmruns.clear_charges(conn, host_id)
            self._audit(
                conn, host_id, now, "charges_cleared", run.actor, "recovered_from_error", {"charges": cleared}
            )
        # A success resets the backoff; an admin's successful activation also ends quarantine.
        manual = run.trigger is Trigger.MANUAL
        held = self.repos.safety.clear_holds(conn, host_id, quarantine=manual, now=now)
        if held and held["quarantined_at"] is not None and manual:
            self._audit(
                conn,
                host_id,
                now,
                "quarantine_cleared",
                run.actor,
                "manual_activation",
                {"activation_id": run.activation_id},
            )

    def _back_off(self, conn: Conn, run: Run, now: datetime) -> None:
        host_id = run.object_id
        failures = self.repos.safety.failures_of(conn, host_id) + 1
        delay = backoff_delay_s(
            failures, self.safety.backoff_base_s, self.safety.backoff_max_s, self.rng.random()
        )
        self.repos.safety.record_failure(conn, host_id, run.fence, now + timedelta(seconds=delay))
        self._audit(
            conn,
            host_id,
            now,
            "backoff",
            "auto",
            f"{failures} failure(s) in a row",
            {"failures": failures, "delay_s": round(delay, 3), "activation_id": run.activation_id},
        )
        log.info("host %s: backing off %.1fs after %s failure(s)", host_id, delay, failures)

    def defer_unknown(self, conn: Conn, run: Run, now: datetime, outcome: str = "outcome_unknown") -> None:
        """Back an automatic activation off after unknown outcomes in a row; charge nothing.

        Call after the activation is closed ``outcome_unknown`` (or ``fence_not_pushed``, an agent
        that could not be told the fence) in this transaction (it counts).
        """
        if run.trigger is not Trigger.AUTO:
            return
        host_id = run.object_id
        unknown = max(self.repos.activations.unknown_streak(conn, host_id), 1)
        delay = backoff_delay_s(
            unknown, self.safety.backoff_base_s, self.safety.backoff_max_s, self.rng.random()
        )
        if not self.repos.safety.postpone(conn, host_id, run.fence, now + timedelta(seconds=delay)):
            return
        self._audit(
            conn,
            host_id,
            now,
            "backoff",
            "auto",
            f"{unknown} unknown init outcome(s) in a row"
            if outcome == "outcome_unknown"
            else f"{unknown} unknown init outcome(s) or unpushed fence(s) in a row",
            {
                "unknown": unknown,
                "outcome": outcome,
                "delay_s": round(delay, 3),
                "activation_id": run.activation_id,
                "charged": False,
            },
        )
        log.info("host %s: backing off %.1fs after %s unknown init outcome(s)", host_id, delay, unknown)

    def _check_flapping(self, conn: Conn, host_id: str, now: datetime) -> None:
        since = now - timedelta(seconds=self.safety.flap_window_s)
        ends = self.repos.safety.auto_ends_since(conn, host_id, since)
        if not is_flapping(ends, self.safety.flap_limit):
            return
        why = (
            f"{ends} automatic recoveries or failures within "
            f"{self.safety.flap_window_s:.0f}s (limit {self.safety.flap_limit})"
        )
        if self.repos.safety.quarantine(conn, host_id, now, why):
            self._audit(conn, host_id, now, "quarantined", "auto", "flapping", {"detail": why})
            log.warning("host %s: quarantined: %s", host_id, why)
