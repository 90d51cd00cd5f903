"""Hung agents hold their own records and nothing else (a real worker, two pool processes).

N hosts whose init never answers (N = twice the pool's processes), while faults come and go on
other hosts: every tick closes within its interval, a new fault elsewhere is seen by the next
tick, the hung hosts stay held (one init each, never a second), and they come up once their
agents answer again. The same with a storage domain whose connect hangs.
"""

from __future__ import annotations

import json
import time
from typing import Any

from autorecovery.adapters import keys
from tests.integration.conftest import host_status, send_ticks, statuses
from tests.support.processes import wait_for

POOL = 2
INTERVAL_S = 1.5
HUNG = {
    "AUTORECOVERY_TICK_INTERVAL_S": str(INTERVAL_S),
    "AUTORECOVERY_INIT_MAX_S": "120",  # longer than the test: the hung hosts stay held
    "AUTORECOVERY_INIT_POLL_S": "0.5",
    "AUTORECOVERY_SD_INACTIVE_AFTER_S": "2.5",  # above one interval plus the init poll
}


def _history(deps: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for raw in deps.redis.lrange(keys.tick_history(), 0, 99):
        data = json.loads(raw)
        found.setdefault(data["task_id"], data)
    return found


class Ticker:
    """Sends a tick every ``INTERVAL_S`` (a beat) and checks that each closed within it."""

    def __init__(self, app_module: Any, deps: Any) -> None:
        self.app_module, self.deps = app_module, deps
        self.sent: list[tuple[str, float]] = []
        self.next_at = time.monotonic() + INTERVAL_S  # one interval after the last tick sent

    def run_for(self, seconds: float, until: Any = None) -> None:
        """Beat for ``seconds`` (or until ``until()`` holds after a tick)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(max(0.0, self.next_at - time.monotonic()))
            self.next_at = time.monotonic() + INTERVAL_S
            task = self.app_module.app.send_task(self.app_module.TICK_TASK, queue="monitoring")
            self.sent.append((task.id, time.time()))
            if until is not None and self.wait_last() and until():
                return

    def wait_last(self) -> bool:
        """Wait (within the interval) for the last tick sent to close; True when it did."""
        tick_id = self.sent[-1][0]
        deadline = time.monotonic() + INTERVAL_S
        while time.monotonic() < deadline:
            if tick_id in _history(self.deps):
                return True
            time.sleep(0.05)
        return False

    def check_every_tick_closed_in_time(self) -> int:
        time.sleep(INTERVAL_S)
        history = _history(self.deps)
        took = []
        for tick_id, sent_at in self.sent[:-1]:
            summary = history.get(tick_id)
            assert summary is not None, f"tick {tick_id} never closed"
            took.append((round(summary["finished_at"] - sent_at, 2), summary.get("skipped")))
        # Claimed (none skipped as still running or too soon) and closed within the interval.
        assert all(s is None and t <= INTERVAL_S for t, s in took), took
        return len(self.sent)


def test_hung_inits_hold_their_hosts_and_blind_no_other_host(
    sim: Any, worker_with: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=10, protocol=2)
    hosts = sorted(h["id"] for h in client.fleet()["hosts"])
    hung, others = hosts[: 2 * POOL], hosts[2 * POOL :]
    worker = worker_with(concurrency=POOL, **HUNG)
    _tick_until_all_up(app_module, deps)
    client.reset_record()  # count the inits from here on

    # The hung hosts go out, then their fault clears while their inits never answer.
    client.inject("kvm_down", hosts=hung)
    send_ticks(app_module, deps)
    assert all(statuses(deps)[h] == "non_operational" for h in hung)
    client.inject("init_hang", hosts=hung)
    client.clear(hosts=hung, fault="kvm_down")
    ticker = Ticker(app_module, deps)
    ticker.run_for(
        20, until=lambda: all(host_status(deps, h)["status"] == "initializing" for h in hung)
    )
    assert all(len(client.inits(h)) == 1 for h in hung)

    # Faults come and go elsewhere: each is seen by the next tick, and healed.
    for victim in others[:3]:
        client.inject("kvm_down", hosts=[victim])
        injected = len(ticker.sent)
        ticker.run_for(3 * INTERVAL_S, until=lambda v=victim: statuses(deps)[v] == "non_operational")
        assert statuses(deps)[victim] == "non_operational"
        assert len(ticker.sent) - injected == 1, "seen by the first tick after the fault"
        client.clear(hosts=[victim], fault="kvm_down")
        ticker.run_for(10, until=lambda v=victim: statuses(deps)[v] == "up")
        assert statuses(deps)[victim] == "up"
    ticker.run_for(5 * INTERVAL_S)

    # Held all along: initializing, one init each, never a second; nobody charged.
    for host_id in hung:
        row = host_status(deps, host_id)
        assert (row["status"], row["failures"], row["quarantined_at"]) == ("initializing", 0, None), host_id
        assert len(client.inits(host_id)) == 1, host_id
    with deps.db.transaction() as conn:
        held = conn.execute(
            "SELECT host_id, state, answer FROM activations WHERE host_id = ANY(%s) AND state = 'sent'",
            (hung,),
        ).fetchall()
    assert sorted((r["host_id"], r["answer"]) for r in held) == [(h, "running") for h in hung]
    assert ticker.check_every_tick_closed_in_time() >= 10

    # Their agents answer again: the next step of each activation sees the init done: up.
    client.clear(hosts=hung, fault="init_hang")
    wait_for(lambda: set(statuses(deps).values()) == {"up"}, 30, "the hung hosts up")
    assert all(len(client.inits(h)) == 1 for h in hung)
    assert client.overlaps()["count"] == 0
    assert "Traceback" not in worker.log(), worker.log()[-4000:]


def test_a_hung_storage_connect_holds_its_domain_and_blinds_no_other_host(
    sim: Any, worker_with: Any, app_module: Any, deps: Any
) -> None:
    client = sim(hosts=8, clusters=2, protocol=2)
    fleet = client.fleet()["hosts"]
    sd = next(iter(sorted(client.fleet()["clusters"][0]["storage_domains"])))
    cluster = client.fleet()["clusters"][0]["id"]
    in_cluster = sorted(h["id"] for h in fleet if h["cluster"] == cluster)
    elsewhere = sorted(h["id"] for h in fleet if h["cluster"] != cluster)
    worker = worker_with(concurrency=POOL, **HUNG)
    _tick_until_all_up(app_module, deps)
    client.reset_record()  # count the inits from here on

    # The domain is lost (inactive), then reachable again while every connect to it hangs.
    client.inject("sd_down", cluster=cluster, target=sd)
    ticker = Ticker(app_module, deps)
    ticker.run_for(20, until=lambda: _domain(deps, sd)["status"] == "inactive")
    client.inject("connect_hang", cluster=cluster)
    client.clear(cluster=cluster, fault="sd_down", target=sd)
    ticker.run_for(20, until=lambda: _sd_activation(deps, sd) == "sent")
    assert _sd_activation(deps, sd) == "sent"
    connects = client.connects(sd_id=sd)
    assert len(connects) == 1

    for victim in elsewhere[:2]:
        client.inject("kvm_down", hosts=[victim])
        injected = len(ticker.sent)
        ticker.run_for(3 * INTERVAL_S, until=lambda v=victim: statuses(deps)[v] == "non_operational")
        assert statuses(deps)[victim] == "non_operational"
        assert len(ticker.sent) - injected == 1, "seen by the first tick after the fault"
        client.clear(hosts=[victim], fault="kvm_down")
        ticker.run_for(10, until=lambda v=victim: statuses(deps)[v] == "up")
    ticker.run_for(4 * INTERVAL_S)
    assert _domain(deps, sd)["status"] == "inactive"
    assert _sd_activation(deps, sd) == "sent"  # held: no second connect
    assert len(client.connects(sd_id=sd)) == 1
    ticker.check_every_tick_closed_in_time()
    assert all(statuses(deps)[h] in ("non_operational", "up") for h in in_cluster)

    # The mount answers again: a later step asks the host the connect went through, and the
    # domain is active; its hosts come back.
    client.clear(cluster=cluster, fault="connect_hang")
    wait_for(lambda: _domain(deps, sd)["status"] == "active", 20, "the domain active")
    assert len(client.connects(sd_id=sd)) == 1
    _tick_until_all_up(app_module, deps)
    assert client.overlaps()["count"] == 0
    assert "Traceback" not in worker.log(), worker.log()[-4000:]


def _tick_until_all_up(app_module: Any, deps: Any) -> None:
    def all_up() -> bool:
        send_ticks(app_module, deps)
        return set(statuses(deps).values()) == {"up"}

    wait_for(all_up, 30, "the fleet up", interval_s=0.5)


def _domain(deps: Any, sd_id: str) -> dict[str, Any]:
    with deps.db.transaction() as conn:
        row = conn.execute("SELECT * FROM storage_domains WHERE id = %s", (sd_id,)).fetchone()
    assert row is not None
    return dict(row)


def _sd_activation(deps: Any, sd_id: str) -> str | None:
    with deps.db.transaction() as conn:
        row = conn.execute(
            "SELECT state FROM sd_activations WHERE sd_id = %s ORDER BY queued_at DESC LIMIT 1", (sd_id,)
        ).fetchone()
    return None if row is None else str(row["state"])
