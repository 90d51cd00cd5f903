"""Random faults for the demo: inject one every few seconds, clear it after a while."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harness.sim import SimulatorClient

CHAOS_FAULTS = (
    "sd_down",
    "nic_down",
    "kvm_down",
    "silent",
    "init_delay",
    "shared_sd_down",
    "vm_fail",
    # What init repairs: the product brings the host back at once, without waiting for a clear.
    "pool_stopped",
    "net_stopped",
)


@dataclass
class Chaos:
    """Injects random faults and clears them after a while; counts what it did."""

    sim: SimulatorClient
    fleet: dict[str, Any]
    rng: random.Random
    injected: int = 0
    pending: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    next_at: float = 0.0

    def step(self, now: float) -> None:
        """Clear what is due, then maybe inject a new fault."""
        for due, clear in [p for p in self.pending if p[0] <= now]:
            self.sim.clear(**clear)
            self.pending.remove((due, clear))
            self.note(f"cleared {clear.get('fault')} on {clear.get('hosts') or clear.get('cluster')}")
        if now < self.next_at:
            return
        self.next_at = now + self.rng.uniform(2.0, 6.0)
        busy = {h for _, c in self.pending for h in c.get("hosts") or []}
        hosts = [h for h in self.fleet["hosts"] if h["id"] not in busy]
        if not hosts:
            return
        host = self.rng.choice(hosts)
        cluster = next(c for c in self.fleet["clusters"] if c["id"] == host["cluster"])
        kind = self.rng.choice(CHAOS_FAULTS)
        hold_s = self.rng.uniform(4.0, 15.0)
        if kind == "shared_sd_down":
            members = [h["id"] for h in hosts if h["cluster"] == cluster["id"]]
            self._lose_domain(now + hold_s, members, cluster)
        else:
            self._fault_host(now, hold_s, kind, host["id"], cluster)
        self.injected += 1

    def _lose_domain(self, until: float, members: list[str], cluster: dict[str, Any]) -> None:
        """A storage domain lost by every free host of a cluster at once."""
        sd = self.rng.choice(cluster["storage_domains"])
        self.sim.inject("sd_down", hosts=members, target=sd)
        self.pending.append((until, {"hosts": members, "fault": "sd_down", "target": sd}))
        self.note(f"storage domain {sd} lost by {len(members)} host(s) of {cluster['id']}")

    def _fault_host(
        self, now: float, hold_s: float, kind: str, host_id: str, cluster: dict[str, Any]
    ) -> None:
        """One fault on one host, with the target or delay its kind takes."""
        params: dict[str, Any] = {}
        if kind in ("sd_down", "pool_stopped"):
            params["target"] = self.rng.choice(cluster["storage_domains"])
        elif kind in ("nic_down", "net_stopped"):
            params["target"] = self.rng.choice(cluster["required_networks"])
        elif kind == "init_delay":
            params["seconds"] = self.rng.uniform(1.0, 4.0)
            hold_s = max(hold_s, 20.0)  # long enough to see an init outlive the fault
        self.sim.inject(kind, hosts=[host_id], **params)
        clear = {"hosts": [host_id], "fault": kind} | (
            {"target": params["target"]} if "target" in params else {}
        )
        self.pending.append((now + hold_s, clear))
        self.note(f"{kind} on {host_id} for {hold_s:.0f}s")

    def clear_all(self) -> None:
        """Clear every pending fault."""
        self.sim.clear()
        self.pending.clear()

    def note(self, text: str) -> None:
        """Add a line to the events the live view shows (the last six)."""
        self.events = [*self.events[-5:], f"{datetime.now(UTC):%H:%M:%S} {text}"]
