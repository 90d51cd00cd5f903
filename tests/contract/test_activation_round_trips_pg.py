"""Round trips to PostgreSQL of an activation's steps, counted on the wire (libpq trace).

Issue 14: 1,000 activations are 1,000 send steps and at least 1,000 check steps on the
activation pool; each round trip is paid by every one of them. These bounds keep the figures
from growing unnoticed (a v2 agent, answered at once: send, then one check that closes ``up``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import fakeredis
import pytest

from autorecovery.adapters.agents.fake import FakeAgentClient
from autorecovery.adapters.store import PG_REPOS, Database
from autorecovery.bootstrap import Adapters, build_services
from bench.roundtrips import RoundTrips
from models.domain import Cluster
from tests.fakes.adapters import UNIT_SETTINGS
from tests.fakes.ports import good_report

pytestmark = pytest.mark.integration

CLUSTER = Cluster("c1", frozenset({"mgmt"}), frozenset({"sd-1"}), "4.5", frozenset({"vmx"}))
#: Measured (send, check): 31 and 28 when every read had a transaction of its own (BEGIN,
#: statement, COMMIT); 25 and 21 with a step's reads pipelined one by one (each paid a flush and
#: a sync); 14 and 13 with each read one round trip on an autocommit connection, every
#: transaction pipelined (BEGIN with its first statement, COMMIT with its last, a wait only where
#: a result is read) and the status kept for a retried attempt not read back.
SEND_TRIPS = 14
CHECK_TRIPS = 13


def test_the_send_and_check_steps_round_trips(traced: tuple[Database, RoundTrips]) -> None:
    db, trips = traced
    now = datetime.now(UTC)
    agents = FakeAgentClient()
    agents.reports["h1"] = replace(good_report("h1", now), protocol=2)
    redis_client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    adapters = Adapters(db=db, redis=redis_client, agents=agents, repos=PG_REPOS)
    services = build_services(UNIT_SETTINGS, adapters)
    with db.transaction() as conn:
        PG_REPOS.hosts.upsert_cluster(conn, CLUSTER)
        PG_REPOS.hosts.insert_host(conn, "h1", "c1", "http://h1", now)
        PG_REPOS.hosts.set_status(conn, "h1", "non_operational", "kvm_not_running", "x", now)
        PG_REPOS.activations.create_many(
            conn, [("a1", "h1")], trigger="auto", actor="auto", now=now,
            statuses=["non_operational"], reason="test",
        )
    trips.take()
    sent = services.activation.run("a1", "h1", "a1")
    send_trips = trips.take()
    assert sent.outcome == "sent"
    done = services.activation.check("a1", "h1", sent.next_check_id)
    check_trips = trips.take()
    assert done.outcome == "up"
    print(f"round trips: send {send_trips}, check {check_trips}")  # noqa: T201 - the figure
    assert send_trips <= SEND_TRIPS
    assert check_trips <= CHECK_TRIPS
    redis_client.close()
