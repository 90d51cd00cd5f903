"""The pure safety core: caps and admission, backoff, flapping, the observer gate, pauses, and
how the policy applies them (as tables, and as the properties issue 5 asks for)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from models.assessment import Assessment, Problem
from models.domain import Cluster, Host, HostStatus, Reason, Report, Trigger
from models.policy import ACTIVATE, Skip, decide, evaluate, recheck
from models.safety import (
    FLEET,
    NO_GATES,
    Admission,
    Candidate,
    CapPolicy,
    Gates,
    Pause,
    admit,
    backoff_delay_s,
    is_flapping,
    is_observed,
    observer_block,
    silent_examples,
)
from tests.unit.test_policy import assessments, clusters, reports

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
S = HostStatus
AUTO, MANUAL = Trigger.AUTO, Trigger.MANUAL
HEALTHY = Assessment((), 3.0)
KVM = Assessment((Problem(Reason.KVM_NOT_RUNNING, "kvm is not running"),), 3.0)


def t(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def cand(host_id: str, cluster_id: str = "c1", waiting_s: float = 0.0) -> Candidate:
    return Candidate(host_id, cluster_id, t(waiting_s))


def ids(admission: Admission) -> tuple[list[str], list[str]]:
    return [c.host_id for c in admission.admitted], [c.host_id for c, _ in admission.capped]


# --- CapPolicy.cluster_limit --------------------------------------------------------------------

LIMITS: list[tuple[str, CapPolicy, int, int]] = [
    ("a quarter of eight", CapPolicy(cluster_share=0.25), 8, 2),
    ("a quarter of ten rounds down", CapPolicy(cluster_share=0.25), 10, 2),
    ("a quarter of three is still one", CapPolicy(cluster_share=0.25), 3, 1),
    ("a share of an empty cluster is one", CapPolicy(cluster_share=0.25), 0, 1),
    ("the whole cluster", CapPolicy(cluster_share=1.0), 7, 7),
    ("no share means the whole cluster", CapPolicy(cluster_share=None), 7, 7),
    ("a number wins over the share", CapPolicy(cluster_max=3, cluster_share=0.9), 100, 3),
    ("a number above the size stays", CapPolicy(cluster_max=5), 2, 5),
    ("a number of zero is one", CapPolicy(cluster_max=0), 10, 1),
    ("a negative number is one", CapPolicy(cluster_max=-4), 10, 1),
]


@pytest.mark.parametrize(("caps", "size", "limit"), [r[1:] for r in LIMITS], ids=[r[0] for r in LIMITS])
def test_cluster_limit_table(caps: CapPolicy, size: int, limit: int) -> None:
    assert caps.cluster_limit(size) == limit


def test_default_caps_are_a_quarter_and_fifty() -> None:
    assert (CapPolicy().cluster_max, CapPolicy().cluster_share, CapPolicy().fleet_max) == (None, 0.25, 50)


# --- admit --------------------------------------------------------------------------------------

ADMISSIONS: list[
    tuple[str, list[Candidate], dict[str, int], dict[str, int], CapPolicy, list[str], list[str]]
] = [
    (
        "share cap: two of eight, oldest first",
        [cand("h5", waiting_s=5), cand("h1", waiting_s=1), cand("h3", waiting_s=3), cand("h2", waiting_s=2)],
        {},
        {"c1": 8},
        CapPolicy(cluster_share=0.25),
        ["h1", "h2"],
        ["h3", "h5"],
    ),
    (
        "number cap",
        [cand(f"h{i}", waiting_s=i) for i in range(5)],
        {},
        {"c1": 100},
        CapPolicy(cluster_max=3),
        ["h0", "h1", "h2"],
        ["h3", "h4"],
    ),
    (
        "at least one in a small cluster",
        [cand("h1"), cand("h2", waiting_s=1)],
        {},
        {"c1": 2},
        CapPolicy(cluster_share=0.25),
        ["h1"],
        ["h2"],
    ),
    (
        "an unknown cluster counts as one host",
        [cand("h1", "cx"), cand("h2", "cx", 1)],
        {},
        {},
        CapPolicy(cluster_share=0.5),
        ["h1"],
        ["h2"],
    ),
    (
        "ties broken by host id",
        [cand("h-b"), cand("h-c"), cand("h-a")],
        {},
        {"c1": 8},
        CapPolicy(cluster_share=0.25),
        ["h-a", "h-b"],
        ["h-c"],
    ),
    (
        "activations in flight take their slots",
        [cand("h1"), cand("h2", waiting_s=1)],
        {"c1": 1},
        {"c1": 8},
        CapPolicy(cluster_share=0.25),
        ["h1"],
        ["h2"],
    ),
    (
        "a full cluster admits nobody",
        [cand("h1")],
        {"c1": 2},
        {"c1": 8},
        CapPolicy(cluster_share=0.25),
        [],
        ["h1"],
    ),
    (
        "clusters are capped apart",
        [cand("a1", "ca", 0), cand("a2", "ca", 1), cand("b1", "cb", 2), cand("b2", "cb", 3)],
        {},
        {"ca": 4, "cb": 4},
        CapPolicy(cluster_share=0.25),
        ["a1", "b1"],
        ["a2", "b2"],
    ),
    (
        "the fleet cap across clusters, oldest first",
        [cand("a1", "ca", 0), cand("b1", "cb", 1), cand("a2", "ca", 2), cand("c1", "cc", 3)],
        {},
        {"ca": 10, "cb": 10, "cc": 10},
        CapPolicy(cluster_share=1.0, fleet_max=3),
        ["a1", "b1", "a2"],
        ["c1"],
    ),
    (
        "in flight elsewhere fills the fleet",
        [cand("a1", "ca")],
        {"cb": 2, "cc": 1},
        {"ca": 10, "cb": 10, "cc": 10},
        CapPolicy(cluster_share=1.0, fleet_max=3),
        [],
        ["a1"],
    ),
    (
        "a capped cluster leaves room for a younger host elsewhere",
        [cand("a1", "ca", 0), cand("a2", "ca", 1), cand("b1", "cb", 2)],
        {},
        {"ca": 1, "cb": 1},
        CapPolicy(cluster_share=1.0, fleet_max=5),
        ["a1", "b1"],
        ["a2"],
    ),
    ("nothing to admit", [], {"c1": 3}, {"c1": 8}, CapPolicy(), [], []),
]


@pytest.mark.parametrize(
    ("candidates", "in_flight", "sizes", "caps", "admitted", "capped"),
    [r[1:] for r in ADMISSIONS],
    ids=[r[0] for r in ADMISSIONS],
)
def test_admit_table(
    candidates: list[Candidate],
    in_flight: dict[str, int],
    sizes: dict[str, int],
    caps: CapPolicy,
    admitted: list[str],
    capped: list[str],
) -> None:
    before = dict(in_flight)
    assert ids(admit(candidates, in_flight, sizes, caps)) == (admitted, capped)
    assert in_flight == before  # the caller's counts are not touched


def test_admit_says_which_cap_holds_a_host() -> None:
    result = admit(
        [cand("a1", "ca", 0), cand("a2", "ca", 1), cand("b1", "cb", 2)],
        {"cb": 0},
        {"ca": 4, "cb": 4},
        CapPolicy(cluster_share=0.25, fleet_max=1),
    )
    assert [(c.host_id, why) for c, why in result.capped] == [
        ("a2", "fleet cap reached: 1/1 activations in flight"),
        ("b1", "fleet cap reached: 1/1 activations in flight"),
    ]
    result = admit(
        [cand("a1", "ca"), cand("a2", "ca", 1)], {"ca": 1}, {"ca": 8}, CapPolicy(cluster_share=0.25)
    )
    assert [(c.host_id, why) for c, why in result.capped] == [("a2", "cluster ca cap reached: 2/2 in flight")]


# The cap is never exceeded whatever the order of events: candidates arrive, activations finish,
# the tick admits again and again. A model of the store drives the pure ``admit``.

CLUSTERS = ("ca", "cb", "cc")


class AdmissionMachine(RuleBasedStateMachine):
    """Hosts waiting, in flight or idle; ``admit`` is the only way into flight."""

    def __init__(self) -> None:
        super().__init__()
        self.caps = CapPolicy()
        self.sizes: dict[str, int] = {}
        self.cluster_of: dict[str, str] = {}
        self.waiting: dict[str, datetime] = {}
        self.flying: set[str] = set()
        self.clock = 0

    @initialize(
        sizes=st.tuples(*[st.integers(1, 12) for _ in CLUSTERS]),
        cluster_max=st.one_of(st.none(), st.integers(-1, 6)),
        share=st.one_of(st.none(), st.floats(0.0, 1.0)),
        fleet_max=st.integers(1, 15),
        start=st.lists(st.integers(0, 1), max_size=40),
    )
    def setup(
        self,
        sizes: tuple[int, ...],
        cluster_max: int | None,
        share: float | None,
        fleet_max: int,
        start: list[int],
    ) -> None:
        self.caps = CapPolicy(cluster_max=cluster_max, cluster_share=share, fleet_max=fleet_max)
        self.sizes = dict(zip(CLUSTERS, sizes, strict=True))
        for cluster, size in self.sizes.items():
            for i in range(size):
                self.cluster_of[f"{cluster}-{i:02d}"] = cluster
        # Start with some activations in flight, within the caps.
        for host_id, flying in zip(sorted(self.cluster_of), start, strict=False):
            cluster = self.cluster_of[host_id]
            counts = self.in_flight()
            has_room = counts.get(cluster, 0) < self.limit(cluster) and sum(counts.values()) < fleet_max
            if flying and has_room:
                self.flying.add(host_id)

    def limit(self, cluster: str) -> int:
        return self.caps.cluster_limit(self.sizes[cluster])

    def in_flight(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for host_id in self.flying:
            counts[self.cluster_of[host_id]] = counts.get(self.cluster_of[host_id], 0) + 1
        return counts

    @precondition(lambda self: bool(self.cluster_of))
    @rule(data=st.data())
    def hosts_go_out(self, data: st.DataObject) -> None:
        idle = sorted(set(self.cluster_of) - self.flying - set(self.waiting))
        if not idle:
            return
        for host_id in data.draw(st.lists(st.sampled_from(idle), max_size=6, unique=True)):
            self.waiting[host_id] = t(data.draw(st.integers(0, self.clock)))

    @precondition(lambda self: bool(self.flying))
    @rule(data=st.data())
    def activations_finish(self, data: st.DataObject) -> None:
        for host_id in data.draw(st.lists(st.sampled_from(sorted(self.flying)), max_size=4, unique=True)):
            self.flying.discard(host_id)
            if data.draw(st.booleans()):  # failed: it waits again
                self.waiting[host_id] = t(self.clock)

    @rule(times=st.integers(1, 3))
    def tick_admits(self, times: int) -> None:
        for _ in range(times):  # a duplicate tick admits under the same lock, after the first
            self.clock += 1
            candidates = [Candidate(h, self.cluster_of[h], since) for h, since in self.waiting.items()]
            result = admit(candidates, self.in_flight(), self.sizes, self.caps)
            assert {c.host_id for c in result.admitted} | {c.host_id for c, _ in result.capped} == set(
                self.waiting
            )
            for c in result.admitted:
                del self.waiting[c.host_id]
                self.flying.add(c.host_id)

    @invariant()
    def caps_hold(self) -> None:
        counts = self.in_flight()
        for cluster, n in counts.items():
            assert n <= self.limit(cluster), (cluster, n, self.caps)
        assert sum(counts.values()) <= self.caps.fleet_max


AdmissionMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestTheCapIsNeverExceededWhateverTheOrderOfEvents = AdmissionMachine.TestCase


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    caps=st.builds(
        CapPolicy,
        cluster_max=st.one_of(st.none(), st.integers(0, 5)),
        cluster_share=st.one_of(st.none(), st.floats(0, 1)),
        fleet_max=st.integers(1, 12),
    ),
)
def test_admit_fills_free_slots_oldest_first(data: st.DataObject, caps: CapPolicy) -> None:
    sizes = {c: data.draw(st.integers(1, 10)) for c in CLUSTERS}
    in_flight = {c: data.draw(st.integers(0, caps.cluster_limit(sizes[c]))) for c in CLUSTERS}
    candidates = data.draw(
        st.lists(
            st.builds(
                Candidate,
                st.text("abc", min_size=1, max_size=4),
                st.sampled_from(CLUSTERS),
                st.integers(0, 20).map(t),
            ),
            unique_by=lambda c: c.host_id,
            max_size=20,
        )
    )
    result = admit(candidates, in_flight, sizes, caps)
    assert sorted(result.admitted + tuple(c for c, _ in result.capped), key=lambda c: c.host_id) == sorted(
        candidates, key=lambda c: c.host_id
    )
    # Nobody waits while an older or equal candidate's cluster and the fleet had room for it.
    after = dict(in_flight)
    for c in result.admitted:
        after[c.cluster_id] += 1
    fleet_full = sum(after.values()) >= caps.fleet_max
    for c, why in result.capped:
        cluster_full = after[c.cluster_id] >= caps.cluster_limit(sizes[c.cluster_id])
        assert fleet_full or cluster_full, why
        younger = [a for a in result.admitted if a.cluster_id == c.cluster_id]
        assert all((a.waiting_since, a.host_id) < (c.waiting_since, c.host_id) for a in younger)


# --- backoff ------------------------------------------------------------------------------------

BACKOFFS: list[tuple[int, float, float]] = [
    # failures, jitter, delay (base 10 s, max 3600 s)
    (0, 0.5, 0.0),
    (-3, 1.0, 0.0),
    (1, 0.0, 5.0),
    (1, 1.0, 10.0),
    (1, 0.5, 7.5),
    (2, 0.0, 10.0),
    (2, 1.0, 20.0),
    (3, 0.0, 20.0),
    (3, 1.0, 40.0),
    (6, 1.0, 320.0),
    (9, 1.0, 2560.0),
    (10, 1.0, 3600.0),  # 5120 capped
    (10, 0.0, 1800.0),
    (200, 1.0, 3600.0),
    (10_000, 0.0, 1800.0),
    (1, -5.0, 5.0),  # jitter clamped into [0, 1]
    (1, 7.0, 10.0),
]


@pytest.mark.parametrize(("failures", "jitter", "delay"), BACKOFFS)
def test_backoff_table(failures: int, jitter: float, delay: float) -> None:
    assert backoff_delay_s(failures, 10.0, 3600.0, jitter) == pytest.approx(delay)


@settings(max_examples=500, deadline=None)
@given(
    n=st.integers(1, 300),
    j=st.floats(0, 1),
    j2=st.floats(0, 1),
    base=st.floats(0.001, 1000),
    max_s=st.floats(0.001, 100_000),
)
def test_backoff_intervals_grow_and_are_bounded(
    n: int, j: float, j2: float, base: float, max_s: float
) -> None:
    delay = backoff_delay_s(n, base, max_s, j)
    ceiling = min(max_s, base * 2.0 ** min(n - 1, 62))
    assert ceiling / 2 <= delay <= ceiling
    assert delay <= max_s
    # The lower bound never shrinks: whatever the jitter, the next wait is at least half of this
    # one's ceiling, and with equal jitter it is at least this one.
    following = backoff_delay_s(n + 1, base, max_s, j2)
    assert following >= ceiling / 2
    assert backoff_delay_s(n + 1, base, max_s, j) >= delay
    assert backoff_delay_s(n + 1, base, max_s, 0.0) >= backoff_delay_s(n, base, max_s, 0.0)


# --- flapping -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ends", "limit", "flapping"), [(0, 5, False), (4, 5, False), (5, 5, True), (9, 5, True), (2, 2, True)]
)
def test_is_flapping_table(ends: int, limit: int, flapping: bool) -> None:
    assert is_flapping(ends, limit) is flapping


# --- observer gate ------------------------------------------------------------------------------

OBSERVER: list[tuple[str, dict[str, Any], str | None]] = [
    ("all fresh", {"silent": 0, "observed": 10}, None),
    ("nothing observed", {"silent": 0, "observed": 0}, None),
    ("half silent is the limit", {"silent": 5, "observed": 10}, None),
    ("over the limit", {"silent": 6, "observed": 10}, "monitoring_stale"),
    ("all silent", {"silent": 10, "observed": 10}, "monitoring_stale"),
    ("a stricter limit", {"silent": 1, "observed": 10, "max_silent_share": 0.05}, "monitoring_stale"),
    ("quiet", {"quiet": True}, "quiet_period"),
    ("quiet before stale", {"quiet": True, "silent": 10, "observed": 10}, "quiet_period"),
    ("redis", {"redis_ok": False}, "redis_unavailable"),
    ("redis before quiet", {"redis_ok": False, "quiet": True}, "redis_unavailable"),
    ("redis before all", {"redis_ok": False, "quiet": True, "silent": 9, "observed": 9}, "redis_unavailable"),
]


@pytest.mark.parametrize(("kw", "prefix"), [r[1:] for r in OBSERVER], ids=[r[0] for r in OBSERVER])
def test_observer_block_table(kw: dict[str, Any], prefix: str | None) -> None:
    args: dict[str, Any] = {
        "silent": 0,
        "observed": 10,
        "max_silent_share": 0.5,
        "quiet": False,
        "redis_ok": True,
    }
    args.update(kw)
    block = observer_block(**args)
    if prefix is None:
        assert block is None
    else:
        assert block is not None and block.startswith(prefix + ": ")


def test_observer_block_names_a_few_silent_hosts_and_the_count() -> None:
    ids = [f"h-{i:04d}" for i in range(1, 8)]
    block = observer_block(
        silent=2100, observed=2103, max_silent_share=0.5, quiet=False, redis_ok=True, silent_ids=ids
    )
    assert block == (
        "monitoring_stale: 2100 of 2103 hosts have no fresh data (limit 50%): "
        "h-0001, h-0002, h-0003, h-0004, h-0005 and 2095 more; the collector or the network may be broken"
    )
    few = observer_block(
        silent=2, observed=3, max_silent_share=0.5, quiet=False, redis_ok=True, silent_ids=["h-2", "h-1"]
    )
    assert few is not None and "(limit 50%): h-2, h-1; the collector" in few


@pytest.mark.parametrize(
    ("status", "counted"),
    [(s, s not in {HostStatus.UNASSIGNED, HostStatus.MAINTENANCE}) for s in HostStatus],
)
def test_the_gate_counts_hosts_heard_from_and_not_in_maintenance(status: HostStatus, counted: bool) -> None:
    assert is_observed(status) is counted


def test_silent_examples_merge_batches_sorted_and_bounded() -> None:
    assert silent_examples(["h-9", "h-3"], ["h-1", "h-3"]) == ["h-1", "h-3", "h-9"]
    assert silent_examples([f"h-{i}" for i in range(9, 0, -1)]) == ["h-1", "h-2", "h-3", "h-4", "h-5"]


def test_observer_block_says_how_stale() -> None:
    block = observer_block(silent=150, observed=200, max_silent_share=0.5, quiet=False, redis_ok=True)
    assert block == (
        "monitoring_stale: 150 of 200 hosts have no fresh data (limit 50%); "
        "the collector or the network may be broken"
    )


# --- pauses and gates ---------------------------------------------------------------------------


def test_pause_is_active_until_it_expires() -> None:
    forever = Pause(FLEET, "upgrade", "alice", NOW)
    assert forever.is_active(t(10**9))
    timed = Pause("c1", "upgrade", "alice", NOW, t(60))
    assert timed.is_active(NOW) and timed.is_active(t(59.999))
    assert not timed.is_active(t(60)) and not timed.is_active(t(61))


def test_pause_describes_who_why_and_until_when() -> None:
    assert Pause(FLEET, "storage upgrade", "alice", NOW).describe() == (
        "paused fleet-wide by alice: storage upgrade"
    )
    assert Pause("c1", "rack work", "bob", NOW, t(3600)).describe() == (
        "paused cluster c1 by bob until 2026-11-24 13:00:00 UTC: rack work"
    )


FLEET_PAUSE = Pause(FLEET, "fleet", "alice", NOW, t(100))
C1_PAUSE = Pause("c1", "c1", "bob", NOW, t(200))


@pytest.mark.parametrize(
    ("pauses", "cluster", "at_s", "expected"),
    [
        ({}, "c1", 0, None),
        ({"c1": C1_PAUSE}, "c1", 0, C1_PAUSE),
        ({"c1": C1_PAUSE}, "c2", 0, None),
        ({FLEET: FLEET_PAUSE}, "c2", 0, FLEET_PAUSE),
        ({FLEET: FLEET_PAUSE, "c1": C1_PAUSE}, "c1", 0, FLEET_PAUSE),  # the fleet's first
        ({FLEET: FLEET_PAUSE, "c1": C1_PAUSE}, "c1", 100, C1_PAUSE),  # the fleet's expired
        ({FLEET: FLEET_PAUSE, "c1": C1_PAUSE}, "c2", 100, None),
        ({FLEET: FLEET_PAUSE, "c1": C1_PAUSE}, "c1", 200, None),  # both expired
    ],
    ids=[
        "none",
        "cluster",
        "other cluster",
        "fleet",
        "fleet first",
        "fleet expired",
        "none left",
        "all expired",
    ],
)
def test_gates_pause_for(pauses: dict[str, Pause], cluster: str, at_s: float, expected: Pause | None) -> None:
    assert Gates(pauses=pauses).pause_for(cluster, t(at_s)) == expected


def test_no_gates_stop_nothing() -> None:
    assert NO_GATES.pause_for("c1", NOW) is None and NO_GATES.observer_block is None


# --- the policy under gates and holds -----------------------------------------------------------


def host(status: HostStatus = S.NON_OPERATIONAL, **kw: Any) -> Host:
    base: dict[str, Any] = {"reason": "kvm_not_running", "detail": "kvm is not running"}
    base.update(kw)
    return Host("h1", "c1", "http://h1", status, **base)


QUARANTINED = host(quarantined_at=t(-60))
BACKING_OFF = host(failures=2, next_attempt_at=t(30))
PAUSED = Gates(pauses={"c1": C1_PAUSE})
OBSERVER_DOWN = Gates(observer_block="quiet_period: waiting")
EVERYTHING = Gates(pauses={FLEET: FLEET_PAUSE}, observer_block="redis_unavailable: x")

GATED: list[tuple[str, Host, Assessment, Trigger, Gates, datetime | None, str]] = [
    ("quarantined", QUARANTINED, HEALTHY, AUTO, NO_GATES, NOW, Skip.QUARANTINED),
    ("quarantined before problems", QUARANTINED, KVM, AUTO, NO_GATES, NOW, Skip.QUARANTINED),
    ("quarantined, manual", QUARANTINED, KVM, MANUAL, EVERYTHING, NOW, ACTIVATE),
    (
        "quarantined but off: off first",
        host(quarantined_at=NOW, autorecovery=False),
        HEALTHY,
        AUTO,
        NO_GATES,
        NOW,
        Skip.AUTORECOVERY_OFF,
    ),
    (
        "quarantined and in flight",
        host(quarantined_at=NOW, in_flight=True),
        HEALTHY,
        AUTO,
        NO_GATES,
        NOW,
        Skip.ACTIVATION_IN_FLIGHT,
    ),
    ("paused", host(), HEALTHY, AUTO, PAUSED, NOW, Skip.PAUSED),
    ("problems before the pause", host(), KVM, AUTO, PAUSED, NOW, Skip.HAS_PROBLEMS),
    ("pause expired", host(), HEALTHY, AUTO, PAUSED, t(200), ACTIVATE),
    ("another cluster's pause", replace(host(), cluster_id="c2"), HEALTHY, AUTO, PAUSED, NOW, ACTIVATE),
    ("paused, manual", host(), HEALTHY, MANUAL, PAUSED, NOW, ACTIVATE),
    ("no clock, no pause", host(), HEALTHY, AUTO, PAUSED, None, ACTIVATE),
    ("observer", host(), HEALTHY, AUTO, OBSERVER_DOWN, NOW, Skip.OBSERVER_UNHEALTHY),
    ("pause before observer", host(), HEALTHY, AUTO, EVERYTHING, NOW, Skip.PAUSED),
    ("observer, manual", host(), HEALTHY, MANUAL, OBSERVER_DOWN, NOW, ACTIVATE),
    ("backoff", BACKING_OFF, HEALTHY, AUTO, NO_GATES, NOW, Skip.BACKOFF),
    ("backoff to the second", BACKING_OFF, HEALTHY, AUTO, NO_GATES, t(29.999), Skip.BACKOFF),
    ("backoff over", BACKING_OFF, HEALTHY, AUTO, NO_GATES, t(30), ACTIVATE),
    ("observer before backoff", BACKING_OFF, HEALTHY, AUTO, OBSERVER_DOWN, NOW, Skip.OBSERVER_UNHEALTHY),
    ("backoff, manual", BACKING_OFF, HEALTHY, MANUAL, NO_GATES, NOW, ACTIVATE),
    ("up stays up whatever the gates", host(S.UP), HEALTHY, AUTO, EVERYTHING, NOW, Skip.HEALTHY),
]


@pytest.mark.parametrize(
    ("h", "a", "trigger", "gates", "now", "code"), [r[1:] for r in GATED], ids=[r[0] for r in GATED]
)
def test_decide_under_gates_table(
    h: Host, a: Assessment, trigger: Trigger, gates: Gates, now: datetime | None, code: str
) -> None:
    decision = decide(h, a, trigger, gates, now)
    assert decision.code == code
    assert decision.detail


def test_gated_decisions_explain_themselves() -> None:
    assert decide(host(), HEALTHY, AUTO, PAUSED, NOW).detail == C1_PAUSE.describe()
    assert decide(host(), HEALTHY, AUTO, OBSERVER_DOWN, NOW).detail == "quiet_period: waiting"
    assert decide(BACKING_OFF, HEALTHY, AUTO, NO_GATES, NOW).detail == (
        "2 failed attempt(s) in a row; next attempt after 2026-11-24 12:00:30 UTC"
    )
    assert "2026-11-24 11:59:00 UTC" in decide(QUARANTINED, HEALTHY, AUTO, NO_GATES, NOW).detail


def test_recheck_applies_pauses_and_quarantine_too() -> None:
    assert recheck(host(in_flight=True), HEALTHY, AUTO, PAUSED, NOW).code == Skip.PAUSED
    assert (
        recheck(replace(QUARANTINED, in_flight=True), HEALTHY, AUTO, NO_GATES, NOW).code == Skip.QUARANTINED
    )
    assert recheck(replace(QUARANTINED, in_flight=True), HEALTHY, MANUAL, PAUSED, NOW).is_activate


# A quarantined host is never activated automatically, whatever its report, the gates or the time.

PAUSES = st.dictionaries(
    st.sampled_from([FLEET, "c", "other"]),
    st.builds(
        Pause,
        st.just("x"),
        st.just("r"),
        st.just("o"),
        st.just(NOW),
        st.one_of(st.none(), st.integers(-100, 100).map(t)),
    ),
    max_size=3,
)
GATES = st.builds(
    Gates, pauses=PAUSES, observer_block=st.one_of(st.none(), st.sampled_from(["quiet_period: q"]))
)
TIMES = st.one_of(st.none(), st.integers(-3600, 3600).map(t))


@st.composite
def held_hosts(draw: st.DrawFn, quarantined: bool) -> Host:
    return Host(
        id="h1",
        cluster_id="c",
        agent_url="http://h1",
        status=draw(st.sampled_from(list(HostStatus))),
        reason=draw(st.one_of(st.none(), st.sampled_from(list(Reason)).map(str))),
        detail=draw(st.one_of(st.none(), st.just("x"))),
        autorecovery=draw(st.booleans()),
        status_changed_at=draw(TIMES),
        fence=draw(st.integers(0, 5)),
        in_flight=draw(st.booleans()),
        failures=draw(st.integers(0, 20)),
        next_attempt_at=draw(TIMES),
        quarantined_at=draw(st.integers(-(10**6), 10**6).map(t)) if quarantined else None,
    )


@settings(max_examples=200, deadline=None)
@given(h=held_hosts(quarantined=True), a=assessments(), gates=GATES, now=TIMES)
def test_a_quarantined_host_is_never_activated_automatically(
    h: Host, a: Assessment, gates: Gates, now: datetime | None
) -> None:
    assert not decide(h, a, AUTO, gates, now).is_activate
    assert not recheck(h, a, AUTO, gates, now).is_activate


@settings(max_examples=300, deadline=None)
@given(h=held_hosts(quarantined=True), report=reports(), cluster=clusters(), gates=GATES, now=TIMES)
def test_a_quarantined_host_is_never_activated_by_the_tick(
    h: Host, report: Report | None, cluster: Cluster, gates: Gates, now: datetime | None
) -> None:
    ev = evaluate(h, report, cluster, now or NOW, 30.0, gates)
    assert not ev.decision.is_activate
    assert ev.host.quarantined_at == h.quarantined_at


@settings(max_examples=300, deadline=None)
@given(h=held_hosts(quarantined=True), a=assessments(), gates=GATES, now=TIMES)
def test_a_quarantined_host_may_be_activated_by_an_admin(
    h: Host, a: Assessment, gates: Gates, now: datetime | None
) -> None:
    blocked = h.status in (S.UP, S.INITIALIZING) or h.in_flight
    assert decide(h, a, MANUAL, gates, now).is_activate is (not blocked)
    # Holds and gates change nothing for an admin: the same answer as with none at all.
    free = replace(h, quarantined_at=None, failures=0, next_attempt_at=None)
    assert decide(h, a, MANUAL, gates, now) == decide(free, a, MANUAL)


@settings(max_examples=300, deadline=None)
@given(h=held_hosts(quarantined=False), a=assessments(), gates=GATES, now=TIMES)
def test_gates_and_holds_only_ever_take_activations_away(
    h: Host, a: Assessment, gates: Gates, now: datetime | None
) -> None:
    if decide(h, a, AUTO, gates, now).is_activate:
        assert decide(replace(h, failures=0, next_attempt_at=None), a, AUTO).is_activate
        assert gates.observer_block is None
        assert now is None or gates.pause_for(h.cluster_id, now) is None
        assert now is None or h.next_attempt_at is None or now >= h.next_attempt_at
