"""Review: activations whose message never reached the broker are no recoveries of the host.

The tick closes them ``failed`` (``not_enqueued``); the flap count (``auto_ends_since``) counts
every automatic activation ``done`` or ``failed``, so a broker outage of a few ticks puts every
host waiting to come back in quarantine for flapping at its next real result: an
infrastructure failure charged to the host, which only an admin clears.
"""

from __future__ import annotations

from autorecovery.settings import Settings
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
