"""The demo's on-call admin: looks at a quarantined host for a while, then clears its quarantine.

Chaos faults every host of a small fleet every minute or so, far more often than a real host
fails: within minutes most hosts recover often enough to be quarantined for flapping, which is
the product doing its job, and then nothing is recovered any more. A real operator looks at a
quarantine and clears it; so does this one, through the API with the admin token, so the audit
log shows who cleared what. ``up --clear-quarantine-after 0`` leaves every quarantine in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

#: How often the operator looks at the fleet, in seconds.
LOOK_EVERY_S = 5.0


@dataclass
class DemoOperator:
    """Clears a host's quarantine once it has been quarantined for ``after_s`` seconds."""

    api: httpx.Client
    after_s: float
    note: Callable[[str], None]
    cleared: int = 0
    first_seen: dict[str, float] = field(default_factory=dict)
    next_at: float = 0.0

    def step(self, now: float) -> None:
        """Look at the quarantined hosts (every few seconds); clear those held long enough."""
        if self.after_s <= 0 or now < self.next_at:
            return
        self.next_at = now + LOOK_EVERY_S
        try:
            quarantined = self._quarantined()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            self.note(f"operator could not list hosts: {exc}")
            return
        self.first_seen = {h: self.first_seen.get(h, now) for h in quarantined}
        for host_id, since in sorted(self.first_seen.items()):
            if now - since >= self.after_s:
                self._clear(host_id, now - since)

    def _quarantined(self) -> set[str]:
        found: set[str] = set()
        params: dict[str, Any] = {"limit": 500}
        while True:
            page: dict[str, Any] = self.api.get("/api/v1/hosts", params=params).raise_for_status().json()
            found |= {h["id"] for h in page["hosts"] if "quarantine" in h["holds"]}
            if not page["next_after"]:
                return found
            params["after"] = page["next_after"]

    def _clear(self, host_id: str, held_s: float) -> None:
        answer = self.api.post(f"/api/v1/hosts/{host_id}/quarantine/clear")
        if answer.status_code == 200:
            self.cleared += 1
            self.first_seen.pop(host_id, None)
            self.note(f"operator cleared the quarantine of {host_id} after {held_s:.0f}s")
        else:
            self.note(f"operator could not clear {host_id}'s quarantine: {answer.status_code}")
