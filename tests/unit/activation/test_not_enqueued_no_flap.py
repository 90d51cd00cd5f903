"""Activations whose message never reached the broker (``not_enqueued``) are no results of the host.

The tick closes them ``failed`` (``not_enqueued``). They count neither for the flap limit
(``auto_ends_since``: a broker outage of a few ticks would otherwise quarantine every host
waiting to come back, which only an admin clears) nor as a real result that restarts the count
of unknown init outcomes in a row (``unknown_streak``, the uncharged backoff).
"""

from __future__ import annotations

from autorecovery.settings import Settings
from models.errors import InitOutcomeUnknown
from tests.fakes.ports import good_report
from tests.unit.activation.conftest import World


def test_a_broker_outage_does_not_quarantine_the_hosts_it_kept_waiting(world: World) -> None:
    limit = Settings.model_construct().flap_limit
    world.out_host(activation_id="first")  # the host's first success ever is not counted: have one
    assert world.activate("first").outcome == "up"
    # The broker is down for `limit` ticks: each tick queues the host's activation and the send
    # fails (MonitoringService's closing: mark_enqueue_failed).
    for n in range(limit):
        world.clock.advance(10)
        act_id = world.out_host(activation_id=f"lost-{n}")
        with world.db.transaction() as conn:
            world.repos.activations.mark_enqueue_failed(conn, [(act_id, "h1")], world.clock(), "broker down")
    world.clock.advance(10)
    act_id = world.out_host(activation_id="after")
    world.agents.reports["h1"] = good_report("h1", world.clock())
    assert world.activate(act_id).outcome == "up"
    host = world.host()
    assert host.quarantined_at is None, "quarantined for flapping by a broker outage"


def test_a_broker_outage_does_not_restart_the_backoff_of_unknown_init_outcomes(world: World) -> None:
    world.agents.init_errors["h1"] = InitOutcomeUnknown("h1: ReadTimeout after 20s")  # a v1 init
    reasons = []
    for n, lost in enumerate([False, True, False]):
        world.clock.advance(3600)
        act_id = world.out_host(activation_id=f"act-{n}")
        if lost:  # this tick's message was refused by the broker
            with world.db.transaction() as conn:
                world.repos.activations.mark_enqueue_failed(conn, [(act_id, "h1")], world.clock(), "down")
            continue
        world.agents.reports["h1"] = good_report("h1", world.clock())
        assert world.activate(act_id).outcome == "outcome_unknown"
        with world.db.transaction() as conn:
            [entry] = world.repos.audit.query(conn, object_id="h1", event="backoff", limit=1)
        reasons.append(entry["reason"])
    assert reasons == ["1 unknown init outcome(s) in a row", "2 unknown init outcome(s) in a row"]
