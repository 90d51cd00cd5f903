"""``ObjectLock`` against fakeredis (with Lua, so redis-py's owner-checking scripts really run)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import fakeredis
import pytest

from autorecovery.adapters import keys
from autorecovery.adapters.locks import ObjectLock, holder_token
from models.errors import LockServiceUnavailable, TransientError

KEY = keys.host_lock("h-001")


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
def client(server: fakeredis.FakeServer) -> Iterator[fakeredis.FakeRedis]:
    c = fakeredis.FakeRedis(server=server)
    yield c
    c.close()


@pytest.fixture
def locks(client: fakeredis.FakeRedis) -> Iterator[Callable[..., ObjectLock]]:
    """Make locks on ``KEY``."""

    def make(ttl_s: float = 10.0, key: str = KEY) -> ObjectLock:
        return ObjectLock(client, key, ttl_s)

    yield make


def wait_until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_key_names_have_the_prefix() -> None:
    assert KEY == "autorecovery:lock:host:h-001"
    assert keys.storage_domain_lock("sd-1").startswith(keys.PREFIX)


def test_acquire_once_then_busy(client: fakeredis.FakeRedis, locks: Callable[..., ObjectLock]) -> None:
    first, second = locks(), locks()
    assert first.token is None
    assert first.acquire() is True
    assert first.token is not None
    assert holder_token(client, KEY) == first.token
    assert second.acquire() is False  # busy is a result, not an exception
    assert second.token is None
    assert 0 < client.pttl(KEY) <= 10_000


def test_the_same_lock_cannot_be_taken_twice(locks: Callable[..., ObjectLock]) -> None:
    lock = locks()
    assert lock.acquire() is True
    assert lock.acquire() is False


def test_locks_on_other_keys_are_independent(locks: Callable[..., ObjectLock]) -> None:
    assert locks().acquire()
    assert locks(key=keys.host_lock("h-002")).acquire()


def test_owner_release_frees_the_key(client: fakeredis.FakeRedis, locks: Callable[..., ObjectLock]) -> None:
    first, second = locks(), locks()
    assert first.acquire()
    first.release()
    assert holder_token(client, KEY) is None
    assert second.acquire() is True


def test_another_lock_cannot_release_it(
    client: fakeredis.FakeRedis, locks: Callable[..., ObjectLock], caplog: pytest.LogCaptureFixture
) -> None:
    owner, other = locks(), locks()
    assert owner.acquire()
    assert not other.acquire()
    with caplog.at_level(logging.WARNING, logger="autorecovery.adapters.locks"):
        other.release()  # logged, not raised
    assert holder_token(client, KEY) == owner.token
    assert "no longer ours" in caplog.text


def test_after_expiry_another_takes_it_and_the_first_release_leaves_it_alone(
    client: fakeredis.FakeRedis, locks: Callable[..., ObjectLock]
) -> None:
    first, second = locks(ttl_s=0.1), locks(ttl_s=10.0)
    assert first.acquire()
    assert wait_until(lambda: holder_token(client, KEY) is None)
    assert second.acquire() is True
    first.release()
    assert holder_token(client, KEY) == second.token
    assert first.renew() is False
    assert holder_token(client, KEY) == second.token


def test_renew_resets_the_ttl(client: fakeredis.FakeRedis, locks: Callable[..., ObjectLock]) -> None:
    lock = locks(ttl_s=10.0)
    assert lock.acquire()
    client.pexpire(KEY, 500)
    assert client.pttl(KEY) <= 500
    assert lock.renew() is True
    assert client.pttl(KEY) > 9_000
    assert holder_token(client, KEY) == lock.token


def test_renew_is_false_once_lost(client: fakeredis.FakeRedis, locks: Callable[..., ObjectLock]) -> None:
    lock, thief = locks(), locks()
    assert lock.acquire()
    client.delete(KEY)
    assert lock.renew() is False
    assert thief.acquire()
    assert lock.renew() is False
    assert holder_token(client, KEY) == thief.token


def test_renew_before_acquire_is_false(locks: Callable[..., ObjectLock]) -> None:
    assert locks().renew() is False


def test_holder_and_remaining_ttl_are_read_from_redis(locks: Callable[..., ObjectLock]) -> None:
    lock, other = locks(ttl_s=5.0), locks()
    assert (other.holder(), other.remaining_ttl_s()) == (None, None)
    assert lock.acquire(owner="act-1")
    assert (other.holder() or "").startswith("act-1:")
    assert 4.0 < (other.remaining_ttl_s() or 0.0) <= 5.0


def test_context_manager_releases(client: fakeredis.FakeRedis, locks: Callable[..., ObjectLock]) -> None:
    lock = locks()
    assert lock.acquire()
    with lock:
        assert holder_token(client, KEY) == lock.token
    assert holder_token(client, KEY) is None


def test_redis_errors_raise_lock_service_unavailable(
    server: fakeredis.FakeServer, client: fakeredis.FakeRedis, locks: Callable[..., ObjectLock]
) -> None:
    lock = locks()
    assert lock.acquire()
    token = lock.token
    server.connected = False
    with pytest.raises(LockServiceUnavailable) as info:
        locks().acquire()
    assert isinstance(info.value, TransientError)
    assert KEY in str(info.value)
    assert isinstance(info.value.__cause__, Exception)
    with pytest.raises(LockServiceUnavailable):
        holder_token(client, KEY)
    assert lock.renew() is False  # logged; the owner stops trusting it
    lock.release()  # logged, never raised: the key expires by itself
    server.connected = True
    assert holder_token(client, KEY) == token
