"""Storage domains and VM-run charges (issue 4's repositories) on the fake and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from models.domain import Cluster, DomainStatus, StorageDomain
from models.placement import Attempt
from tests.contract.conftest import Backend
from tests.contract.helpers import T0, at, audit, backdate, host, is_db_now, report, tx

SD_ACTIVATION_KEYS = {
    "id",
    "sd_id",
    "trigger",
    "actor",
    "state",
    "fence",
    "outcome",
    "detail",
    "queued_at",
    "started_at",
    "ended_at",
    "answer",
    "target",
    "deadline_at",
    "past_deadline",
}


def fleet(
    backend: Backend, hosts: dict[str, str], domains: tuple[str, ...] = ("sd-1", "sd-2", "sd-3")
) -> None:
    """Cluster ``c1`` with ``domains`` and the hosts in the given statuses; domains registered."""
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c1", frozenset(), frozenset(domains)))
        backend.repos.storage.ensure(conn, domains, T0)
        for host_id, status in hosts.items():
            backend.repos.hosts.insert_host(conn, host_id, "c1", f"http://{host_id}", T0)
            backend.repos.hosts.set_status(conn, host_id, status, None, "seeded", T0)


def reports(backend: Backend, now: float, **by_host: dict[str, bool]) -> None:
    with tx(backend) as conn:
        backend.repos.hosts.upsert_reports(
            conn, [report(h, at(now), storage_domains=sds) for h, sds in by_host.items()], at(now)
        )


def domain(backend: Backend, sd_id: str) -> StorageDomain:
    with tx(backend) as conn:
        found = backend.repos.storage.get(conn, sd_id)
    assert found is not None
    return found


# --- storage domains ----------------------------------------------------------------------------


def test_ensure_registers_new_domains_only(backend: Backend) -> None:
    with tx(backend) as conn:
        assert backend.repos.storage.ensure(conn, [], T0) == []
        assert sorted(backend.repos.storage.ensure(conn, ["sd-2", "sd-1", "sd-2"], T0)) == ["sd-1", "sd-2"]
        assert backend.repos.storage.ensure(conn, ["sd-3", "sd-1"], at(5)) == ["sd-3"]
        assert backend.repos.storage.get(conn, "nope") is None
        domains = backend.repos.storage.all_domains(conn)
    assert list(domains) == ["sd-1", "sd-2", "sd-3"]
    assert domains["sd-1"] == StorageDomain("sd-1", DomainStatus.ACTIVE, True, 0, T0, T0, None)
    assert domains["sd-3"].last_seen_at == at(5)


def test_clusters_of_and_the_autorecovery_flag(backend: Backend) -> None:
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c2", storage_domains=frozenset({"sd-1"})))
        backend.repos.hosts.upsert_cluster(conn, Cluster("c1", storage_domains=frozenset({"sd-1", "sd-2"})))
        backend.repos.storage.ensure(conn, ["sd-1", "sd-2", "sd-9"], T0)
        assert backend.repos.storage.clusters_of(conn, "sd-1") == ["c1", "c2"]
        assert backend.repos.storage.clusters_of(conn, "sd-9") == []
        assert backend.repos.storage.set_autorecovery(conn, "sd-2", False) is True
        assert backend.repos.storage.set_autorecovery(conn, "nope", False) is False
    assert domain(backend, "sd-2").autorecovery is False


def test_set_status_is_fenced_and_active_means_seen(backend: Backend) -> None:
    fleet(backend, {})
    with tx(backend) as conn:
        assert (
            backend.repos.storage.set_status(conn, "sd-1", "maintenance", "by hand", at(5), fence=3) is False
        )
        assert (
            backend.repos.storage.set_status(conn, "sd-1", "maintenance", "by hand", at(5), fence=0) is True
        )
        assert backend.repos.storage.set_status(conn, "nope", "active", None, at(5)) is False
    sd = domain(backend, "sd-1")
    assert (sd.status, sd.detail, sd.status_changed_at, sd.last_seen_at) == (
        DomainStatus.MAINTENANCE,
        "by hand",
        at(5),
        T0,
    )
    with tx(backend) as conn:
        assert backend.repos.storage.set_status(conn, "sd-1", "maintenance", "again", at(6))
        assert backend.repos.storage.set_status(conn, "sd-1", "active", "back", at(7))
    sd = domain(backend, "sd-1")
    assert (sd.status, sd.detail, sd.status_changed_at, sd.last_seen_at) == (
        DomainStatus.ACTIVE,
        "back",
        at(7),
        at(7),
    )


def test_follow_monitoring_moves_domains_by_what_up_hosts_reach(backend: Backend) -> None:
    fleet(backend, {"u1": "up", "u2": "up", "d1": "non_operational"}, ("sd-1", "sd-2", "sd-3", "sd-4"))
    with tx(backend) as conn:
        backend.repos.storage.set_status(conn, "sd-4", "maintenance", "by hand", T0)
    reports(
        backend,
        100,
        u1={"sd-1": True, "sd-2": False},
        d1={"sd-3": True, "sd-4": False},  # not up: does not count
    )
    reports(backend, 10, u2={"sd-2": True})  # stale
    with tx(backend) as conn:
        moved = backend.repos.storage.follow_monitoring(
            conn, now=at(120), fresh_after=at(90), inactive_before=at(60)
        )
    assert sorted((m["id"], m["from_status"], m["to_status"]) for m in moved) == [
        ("sd-2", "active", "inactive"),
        ("sd-3", "active", "inactive"),
    ]
    sd1, sd2, sd4 = domain(backend, "sd-1"), domain(backend, "sd-2"), domain(backend, "sd-4")
    assert (sd1.status, sd1.last_seen_at, sd1.status_changed_at) == (DomainStatus.ACTIVE, at(120), T0)
    assert (sd2.status, sd2.status_changed_at, sd2.last_seen_at) == (DomainStatus.INACTIVE, at(120), T0)
    assert sd2.detail == "no up host reached it since 2026-11-24 12:00:00+00"
    assert sd4.status is DomainStatus.MAINTENANCE  # never left here
    entries = audit(backend, event="status_changed", object_type="storage_domain")
    assert sorted((e["object_id"], e["actor"], e["reason"], e["details"]["to"]) for e in entries) == [
        ("sd-2", "auto", "no up host reached it since 2026-11-24 12:00:00+00", "inactive"),
        ("sd-3", "auto", "no up host reached it since 2026-11-24 12:00:00+00", "inactive"),
    ]
    # An up host reaches sd-2 again: active again; a quiet round changes nothing.
    reports(backend, 130, u2={"sd-2": True})
    with tx(backend) as conn:
        moved = backend.repos.storage.follow_monitoring(
            conn, now=at(140), fresh_after=at(110), inactive_before=at(80)
        )
        again = backend.repos.storage.follow_monitoring(
            conn, now=at(141), fresh_after=at(110), inactive_before=at(80)
        )
    assert [(m["id"], m["from_status"], m["to_status"]) for m in moved] == [("sd-2", "inactive", "active")]
    assert again == []
    sd2 = domain(backend, "sd-2")
    assert (sd2.status, sd2.detail, sd2.last_seen_at) == (
        DomainStatus.ACTIVE,
        "reached by an up host again",
        at(141),
    )
    assert domain(backend, "sd-1").last_seen_at == at(120)  # u1's report is stale now


def test_a_tick_racing_an_admins_maintenance_leaves_the_domain_in_maintenance(backend: Backend) -> None:
    if backend.name == "memory":
        pytest.skip("the fake runs one transaction at a time: the race needs two connections")
    fleet(backend, {"u1": "up"}, ("sd-1",))
    with tx(backend) as conn:
        backend.repos.storage.set_status(conn, "sd-1", "inactive", "unreached", T0)
    reports(backend, 100, u1={"sd-1": True})  # an up host reaches it: the tick would activate it
    moved: list[Any] = []
    admin_holds = threading.Event()

    def tick() -> None:
        admin_holds.wait(10)
        with tx(backend) as conn:  # its snapshot still shows the domain inactive
            moved.extend(
                backend.repos.storage.follow_monitoring(
                    conn, now=at(120), fresh_after=at(90), inactive_before=at(60)
                )
            )

    ticker = threading.Thread(target=tick)
    ticker.start()
    with tx(backend) as conn:  # the admin's maintenance, committed while the tick waits on its row
        backend.repos.storage.set_status(conn, "sd-1", "maintenance", "by hand", at(110))
        admin_holds.set()
        time.sleep(0.5)
    ticker.join(10)
    assert domain(backend, "sd-1").status is DomainStatus.MAINTENANCE
    assert [m for m in moved if m["id"] == "sd-1"] == []
    assert [e for e in audit(backend, event="status_changed") if e["details"].get("to") == "active"] == []


def test_reachable_inactive_and_connect_targets(backend: Backend) -> None:
    fleet(
        backend,
        {"u1": "up", "n1": "non_operational", "n0": "non_operational", "m1": "maintenance", "s1": "up"},
    )
    with tx(backend) as conn:
        for sd in ("sd-1", "sd-2", "sd-3"):
            backend.repos.storage.set_status(conn, sd, "inactive", "gone", T0)
        backend.repos.storage.set_autorecovery(conn, "sd-3", False)
    reports(
        backend, 100, u1={"sd-1": True}, n1={"sd-1": True}, n0={"sd-1": True}, m1={"sd-1": True, "sd-2": True}
    )
    reports(backend, 10, s1={"sd-1": True, "sd-2": True, "sd-3": True})  # stale
    with tx(backend) as conn:
        # m1 is in maintenance, but its report still says the domain is reachable.
        assert backend.repos.storage.reachable_inactive(conn, at(90)) == ["sd-1", "sd-2"]
        assert backend.repos.storage.queue_activation(
            conn, "x1", "sd-1", trigger="auto", actor="auto", now=at(100)
        )
        assert backend.repos.storage.reachable_inactive(conn, at(90)) == ["sd-2"]  # sd-1 is in flight
        targets = backend.repos.storage.connect_targets(conn, "sd-1", at(90))
        assert backend.repos.storage.connect_targets(conn, "sd-2", at(90)) == []
    assert [dict(t) for t in targets] == [
        {"id": "u1", "agent_url": "http://u1", "status": "up"},
        {"id": "n0", "agent_url": "http://n0", "status": "non_operational"},
        {"id": "n1", "agent_url": "http://n1", "status": "non_operational"},
    ]


def test_domain_activations_queue_once_and_are_fenced(backend: Backend) -> None:
    fleet(backend, {})
    with tx(backend) as conn:
        assert backend.repos.storage.in_flight(conn, "sd-1") is None
        assert backend.repos.storage.queue_activation(
            conn, "x1", "sd-1", trigger="auto", actor="auto", now=at(1)
        )
        assert not backend.repos.storage.queue_activation(
            conn, "x2", "sd-1", trigger="manual", actor="bob", now=at(2)
        )
        assert not backend.repos.storage.queue_activation(
            conn, "x1", "sd-2", trigger="auto", actor="auto", now=at(2)
        )
        queued = backend.repos.storage.in_flight(conn, "sd-1")
        assert backend.repos.storage.get_activation(conn, "x2") is None
    assert set(queued) == SD_ACTIVATION_KEYS
    assert (queued["id"], queued["state"], queued["fence"]) == ("x1", "queued", None)
    assert is_db_now(queued["queued_at"])  # the lease is the database's clock
    [entry] = audit(backend, event="activation_queued")
    assert (entry["object_type"], entry["object_id"], entry["actor"], entry["reason"], entry["details"]) == (
        "storage_domain",
        "sd-1",
        "auto",
        "auto",
        {"activation_id": "x1"},
    )
    with tx(backend) as conn:
        fence = backend.repos.storage.begin_activation(conn, "x1", at(3))
        assert backend.repos.storage.begin_activation(conn, "ghost", at(3)) is None
    assert fence == 1 and domain(backend, "sd-1").fence == 1
    with tx(backend) as conn:
        assert not backend.repos.storage.finish_activation(
            conn, "x1", state="done", outcome="active", detail="ok", now=at(4), fence=2
        )
        assert backend.repos.storage.finish_activation(
            conn, "x1", state="done", outcome="active", detail="ok", now=at(4), fence=1
        )
        assert not backend.repos.storage.finish_activation(
            conn, "x1", state="failed", outcome="x", detail="x", now=at(5), fence=None
        )
        done = backend.repos.storage.get_activation(conn, "x1")
        assert backend.repos.storage.in_flight(conn, "sd-1") is None
        assert backend.repos.storage.begin_activation(conn, "x1", at(6)) is None
    assert (done["state"], done["outcome"], done["detail"], done["ended_at"]) == (
        "done",
        "active",
        "ok",
        at(4),
    )
    assert is_db_now(done["started_at"])


def test_queueing_for_an_unknown_domain_is_an_integrity_error(backend: Backend) -> None:
    fleet(backend, {})
    with pytest.raises(psycopg.IntegrityError), tx(backend) as conn:
        backend.repos.storage.queue_activation(conn, "x1", "nope", trigger="auto", actor="auto", now=T0)


def test_reap_domain_activations(backend: Backend) -> None:
    fleet(backend, {})
    with tx(backend) as conn:
        backend.repos.storage.queue_activation(conn, "q-old", "sd-1", trigger="auto", actor="auto", now=at(0))
        backend.repos.storage.queue_activation(conn, "r-old", "sd-2", trigger="auto", actor="auto", now=at(0))
        backend.repos.storage.queue_activation(
            conn, "q-new", "sd-3", trigger="auto", actor="auto", now=at(50)
        )
        backend.repos.storage.begin_activation(conn, "r-old", at(10))
    backdate(backend, "sd_activations", "q-old", 100)
    backdate(backend, "sd_activations", "r-old", 100)
    with tx(backend) as conn:
        assert (
            backend.repos.storage.reap_activations(conn, now=at(100), queued_ttl_s=40, running_ttl_s=60) == 2
        )
        assert (
            backend.repos.storage.reap_activations(conn, now=at(100), queued_ttl_s=40, running_ttl_s=60) == 0
        )
        states = {
            a: backend.repos.storage.get_activation(conn, a)["state"] for a in ("q-old", "r-old", "q-new")
        }
    assert states == {"q-old": "abandoned", "r-old": "abandoned", "q-new": "queued"}
    assert [domain(backend, sd).fence for sd in ("sd-1", "sd-2", "sd-3")] == [1, 2, 0]


# --- VM runs, charges and the error state -------------------------------------------------------


def charge(backend: Backend, vm: str, now: float, since: float, *hosts: str) -> dict[str, int]:
    attempts = [Attempt(h, ok=False, error=f"{vm} failed on {h}") for h in hosts]
    with tx(backend) as conn:
        run_id = backend.repos.vmruns.add_run(
            conn, vm, [*attempts, Attempt("ok", True)], "scheduler", at(now)
        )
        return dict(backend.repos.vmruns.add_charges(conn, run_id, vm, attempts, at(now), at(since)))


def test_charges_count_within_the_window(backend: Backend) -> None:
    fleet(backend, {"h1": "up", "h2": "up", "ok": "up"})
    with tx(backend) as conn:
        first = backend.repos.vmruns.add_run(conn, "vm-0", [Attempt("ok", True)], "scheduler", T0)
        assert backend.repos.vmruns.add_charges(conn, first, "vm-0", [], T0, T0) == {}
    assert charge(backend, "vm-1", 10, 0, "h1", "h2") == {"h1": 1, "h2": 1}
    assert charge(backend, "vm-2", 20, 0, "h1") == {"h1": 2}
    assert charge(backend, "vm-3", 30, 15, "h1", "h2") == {"h1": 2, "h2": 1}  # vm-1's charges decayed
    with tx(backend) as conn:
        assert backend.repos.vmruns.recent_charges(conn, at(0)) == {"h1": 3, "h2": 2}
        assert backend.repos.vmruns.recent_charges(conn, at(15)) == {"h1": 2, "h2": 1}
        assert backend.repos.vmruns.recent_charges(conn, at(15), cluster_id="c9") == {}
        assert backend.repos.vmruns.known_hosts(conn, ["h1", "ghost", "ok"]) == {"h1", "ok"}


def test_charging_an_unknown_host_is_an_integrity_error(backend: Backend) -> None:
    fleet(backend, {"h1": "up"})
    with pytest.raises(psycopg.IntegrityError):
        charge(backend, "vm-1", 10, 0, "h1", "ghost")
    with tx(backend) as conn:
        assert backend.repos.vmruns.recent_charges(conn, T0) == {}


def test_enter_error_takes_only_up_hosts_and_clear_charges_forgets(backend: Backend) -> None:
    fleet(backend, {"h1": "up", "h2": "non_operational", "h3": "up"})
    charge(backend, "vm-1", 10, 0, "h1", "h3")
    with tx(backend) as conn:
        assert backend.repos.vmruns.enter_error(conn, [], at(60), at(20), "x") == []
        errored = backend.repos.vmruns.enter_error(
            conn, ["h1", "h2", "ghost"], at(600), at(20), "3 VMs failed"
        )
    assert errored == ["h1"]
    h1 = host(backend, "h1")
    assert (h1.status.value, h1.reason, h1.detail, h1.error_until, h1.status_changed_at) == (
        "error",
        "vm_launch_failures",
        "3 VMs failed",
        at(600),
        at(20),
    )
    assert host(backend, "h2").error_until is None
    [entry] = audit(backend, event="status_changed", object_id="h1")
    assert (entry["actor"], entry["reason"]) == ("auto", "vm_launch_failures")
    assert entry["details"] == {
        "from": "up",
        "to": "error",
        "detail": "3 VMs failed",
        "until": "2026-11-24T12:10:00+00:00",
    }
    with tx(backend) as conn:
        assert backend.repos.vmruns.clear_charges(conn, "h1") == 1
        assert backend.repos.vmruns.clear_charges(conn, "h1") == 0
        assert backend.repos.vmruns.clear_charges(conn, "ghost") == 0
        assert backend.repos.vmruns.recent_charges(conn, T0) == {"h3": 1}
    assert host(backend, "h1").error_until is None


def test_deleting_a_host_deletes_its_charges(backend: Backend) -> None:
    fleet(backend, {"h1": "up", "h2": "up"})
    charge(backend, "vm-1", 10, 0, "h1", "h2")
    with tx(backend) as conn:
        assert backend.repos.hosts.delete_host(conn, "h1")
        counts: Any = backend.repos.vmruns.recent_charges(conn, T0)
    assert counts == {"h2": 1}


def test_raise_fence_moves_a_domains_fence_up_only_from_the_given_one(backend: Backend) -> None:
    fleet(backend, {})
    with tx(backend) as conn:
        assert not backend.repos.storage.raise_fence(conn, "sd-1", 7, 9)
        assert backend.repos.storage.raise_fence(conn, "sd-1", 0, 3)
        assert not backend.repos.storage.raise_fence(conn, "ghost", 0, 3)
    assert domain(backend, "sd-1").fence == 3
    with tx(backend) as conn:
        assert backend.repos.storage.raise_fence(conn, "sd-1", 3, 1)
    assert domain(backend, "sd-1").fence == 3


def test_a_domain_a_host_can_repair_is_reactivated_through_that_host(backend: Backend) -> None:
    fleet(backend, {"u1": "up", "n1": "non_operational", "n2": "non_operational"})
    with tx(backend) as conn:
        backend.repos.storage.set_status(conn, "sd-1", "inactive", "gone", T0)
    # n1's pool is stopped with its target there (repairable), n2 reaches the domain, u1 does not.
    with tx(backend) as conn:
        backend.repos.hosts.upsert_reports(
            conn,
            [
                report(
                    "n1",
                    at(100),
                    storage_domains={"sd-1": False},
                    repairable=frozenset({"storage_domain:sd-1"}),
                ),
                report("n2", at(100), storage_domains={"sd-1": True}),
                report("u1", at(100), storage_domains={"sd-1": False}, repairable=frozenset({"network:x"})),
            ],
            at(100),
        )
    with tx(backend) as conn:
        assert backend.repos.storage.reachable_inactive(conn, at(90)) == ["sd-1"]
        targets = backend.repos.storage.connect_targets(conn, "sd-1", at(90))
    # The host that reaches it first, then the one that can repair it; never one that can do neither.
    assert [t["id"] for t in targets] == ["n2", "n1"]
    with tx(backend) as conn:
        backend.repos.hosts.upsert_reports(
            conn, [report("n2", at(101), storage_domains={"sd-1": False})], at(101)
        )
    with tx(backend) as conn:
        assert backend.repos.storage.reachable_inactive(conn, at(90)) == ["sd-1"]
        assert [t["id"] for t in backend.repos.storage.connect_targets(conn, "sd-1", at(90))] == ["n1"]
        backend.repos.hosts.upsert_reports(
            conn, [report("n1", at(102), storage_domains={"sd-1": False})], at(102)
        )
    with tx(backend) as conn:
        assert backend.repos.storage.reachable_inactive(conn, at(90)) == []
