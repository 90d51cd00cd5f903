"""A broker failure while sending one storage domain activation does not stop the tick."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.services.fleet import HostSpec
from models.domain import Cluster
from models.errors import BrokerUnavailable
from tests.fakes import FixedClock, MemoryDatabase, RecordingEnqueuer, fake_container, memory_repos
from tests.fakes.ports import good_report
from tests.unit.test_reaper import TICK

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def test_a_domain_the_broker_refuses_is_closed_and_the_hosts_are_still_admitted() -> None:
    clock = FixedClock(T0)
    db: Any = MemoryDatabase(clock=clock)
    repos = memory_repos(db)
    agents = FakeAgentClient()
    hosts = RecordingEnqueuer()
    sent: list[str] = []

    def enqueue_domain(activation_id: str, sd_id: str, trigger: str, actor: str) -> None:
        if sd_id == "sd-a":
            raise BrokerUnavailable("broker refused the message")
        sent.append(sd_id)

    services = fake_container(db, clock, agents, hosts, tick=TICK, enqueue_domain=enqueue_domain)
    fleet, monitoring = services.fleet, services.monitoring
    fleet.register_cluster(Cluster("c2", frozenset({"mgmt"})), "admin")
    fleet.register_hosts([HostSpec("h9", "c2", "http://h9")], "admin")
    with db.transaction() as conn:
        repos.storage.ensure(conn, ["sd-a", "sd-b"], T0)
        for sd_id in ("sd-a", "sd-b"):
            repos.storage.set_status(conn, sd_id, "inactive", "lost", T0)
    agents.reports["h9"] = good_report("h9", T0, storage_domains={"sd-a": True, "sd-b": True})

    result = monitoring.tick()

    services.close()
    assert sent == ["sd-b"]
    assert hosts.hosts() == ["h9"] and result.enqueued == 1  # admission of hosts went on
    with db.transaction() as conn:
        assert repos.storage.in_flight(conn, "sd-a") is None
        refused = [a for a in db.state.sd_activations.values() if a["sd_id"] == "sd-a"]
        [entry] = repos.audit.query(conn, event="activation_not_enqueued")
    assert [(a["state"], a["outcome"]) for a in refused] == [("failed", "not_enqueued")]
    assert (entry["object_type"], entry["object_id"], entry["reason"]) == (
        "storage_domain",
        "sd-a",
        "broker_unavailable",
    )
    assert entry["details"]["error"] == "broker refused the message"
