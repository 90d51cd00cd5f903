"""The init hold (an init's outcome not seen) on the fake and on PostgreSQL."""

from __future__ import annotations

from models.domain import Cluster
from tests.contract.conftest import Backend
from tests.contract.helpers import T0, at, host, tx


def test_hold_init_sets_and_never_shortens_a_hold(backend: Backend) -> None:
    with tx(backend) as conn:
        backend.repos.hosts.upsert_cluster(conn, Cluster("c1"))
        backend.repos.hosts.insert_host(conn, "h1", "c1", "http://h1", T0)
    assert host(backend, "h1").init_hold_until is None
    with tx(backend) as conn:
        assert backend.repos.hosts.hold_init(conn, "h1", at(20))
        assert not backend.repos.hosts.hold_init(conn, "ghost", at(20))
    assert host(backend, "h1").init_hold_until == at(20)
    with tx(backend) as conn:
        assert backend.repos.hosts.hold_init(conn, "h1", at(10))
    assert host(backend, "h1").init_hold_until == at(20)
    with tx(backend) as conn:
        assert backend.repos.hosts.hold_init(conn, "h1", at(30))
    assert host(backend, "h1").init_hold_until == at(30)
