"""Every path that takes a v1 init's activation away while that init may still run holds
the host (SPEC Appendix B: "the product then protects it by holding the host for the longest init
time after any init whose outcome it did not see"), so that no second init overlaps it.
"""

from __future__ import annotations

from datetime import timedelta

from models.assessment import assess
from models.domain import HostStatus, Trigger
from models.policy import decide
from tests.fakes.ports import good_report
from tests.unit.activation.conftest import CLUSTER, INIT_MAX_S, MAX_AGE_S, World

S = HostStatus


def _earlier_attempt_sent_a_v1_init(world: World) -> str:
    """An activation's first attempt began, set initializing, sent its (blocking, v1) init and died."""
    act_id = world.out_host()
    fence = world.begin(act_id)
    with world.db.transaction() as conn:
        assert world.repos.hosts.set_status(conn, "h1", "initializing", None, "x", world.clock(), fence=fence)
    world.agents.init_calls.append(("h1", fence, act_id))
    return act_id


def _tick_would_activate(world: World) -> bool:
    report = good_report("h1", world.clock())
    assessment = assess(report, CLUSTER, world.clock(), MAX_AGE_S)
    return decide(world.host(), assessment, Trigger.AUTO, now=world.clock()).is_activate


def test_a_resumed_v1_activation_skipped_on_its_recheck_holds_the_host(world: World) -> None:
    act_id = _earlier_attempt_sent_a_v1_init(world)
    # The redelivery re-checks while that init still runs: the report shows what it is fixing.
    world.agents.reports["h1"] = good_report("h1", world.clock(), kvm=False)
    out = world.activation.run(act_id, "h1")
    assert out.outcome == "has_problems"
    assert world.host().status is S.NON_OPERATIONAL
    # Well within the longest init time, the report is clean: the first init may still run.
    world.clock.advance(INIT_MAX_S / 4)
    assert not _tick_would_activate(world), "a second init could overlap the unseen v1 init"


def test_a_reaped_sending_v1_activation_holds_the_host(world: World) -> None:
    _earlier_attempt_sent_a_v1_init(world)
    # Its worker was lost (hard time limit, dead machine): the housekeeping reaps the record once
    # its lease is over, which with the defaults (70 s) is well within init_max_s (120 s).
    world.clock.advance(INIT_MAX_S / 2)
    with world.db.transaction() as conn:
        reaped = world.repos.activations.reap(
            conn,
            now=world.clock(),
            queued_ttl_s=INIT_MAX_S / 4,
            running_ttl_s=INIT_MAX_S / 4,
            init_hold_s=INIT_MAX_S,
        )
    assert [r["was"] for r in reaped] == ["sending"]
    assert world.host().status is S.NON_OPERATIONAL
    world.clock.advance(1)
    assert not _tick_would_activate(world), "a second init could overlap the unseen v1 init"
    assert world.host().init_hold_until is not None
    assert world.host().init_hold_until >= world.clock() + timedelta(seconds=INIT_MAX_S / 4)
