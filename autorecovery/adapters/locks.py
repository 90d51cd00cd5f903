"""Per-object Redis locks with a random token, a TTL and owner-only release.

Built on redis-py's ``Lock`` (atomic Lua scripts for release and extend by the owner's token).
A busy lock is a normal result (``acquire`` returns False), never an exception.
"""

from __future__ import annotations

import logging
import uuid
from types import TracebackType

import redis
from redis.exceptions import LockError, LockNotOwnedError

from models.errors import LockServiceUnavailable

log = logging.getLogger(__name__)


class ObjectLock:
    """A lock on one key, owned by whoever acquired it with its token."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self.key = key
        self.ttl_s = ttl_s
        self._client = client
        self._lock = client.lock(key, timeout=ttl_s, blocking=False, thread_local=False)

    @property
    def token(self) -> str | None:
        """The owner's random token, once acquired."""
        raw = self._lock.local.token
        return raw.decode() if isinstance(raw, bytes) else raw

    def acquire(self, owner: str = "") -> bool:
        """Try once to take the lock; False when someone else holds it.

        Args:
            owner: prefix of the random token, so that a holder can be recognised (an
                activation's id: another delivery of the same activation sees it is the holder).
        """
        token = f"{owner}:{uuid.uuid4().hex}" if owner else None
        try:
            return bool(self._lock.acquire(blocking=False, token=token))
        except redis.RedisError as exc:
            raise LockServiceUnavailable(f"cannot take lock {self.key}: {exc}") from exc

    def renew(self) -> bool:
        """Reset the TTL if we still own the lock; False when it was lost."""
        try:
            self._lock.reacquire()
            return True
        except (LockNotOwnedError, LockError):
            return False
        except redis.RedisError as exc:
            log.warning("lock %s: renewal failed: %s", self.key, exc)
            return False

    def release(self) -> None:
        """Release the lock if we still own it; a lost lock is logged, not raised."""
        try:
            self._lock.release()
        except (LockNotOwnedError, LockError):
            log.warning("lock %s was no longer ours at release", self.key)
        except redis.RedisError as exc:
            log.warning("lock %s: release failed (%s); it expires in %ss", self.key, exc, self.ttl_s)

    def holder(self) -> str | None:
        """The token of whoever holds the lock now, None when free."""
        return holder_token(self._client, self.key)

    def remaining_ttl_s(self) -> float | None:
        """Seconds until the held lock expires by itself; None when free."""
        return remaining_ttl_s(self._client, self.key)

    def is_owned(self) -> bool:
        """Ask Redis now whether the lock is still ours; False when lost or Redis cannot say."""
        try:
            return bool(self._lock.owned())
        except redis.RedisError as exc:
            log.warning("lock %s: cannot check ownership: %s", self.key, exc)
            return False

    def __enter__(self) -> ObjectLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def holder_token(client: redis.Redis, key: str) -> str | None:
    """Return the token stored in a lock key, or None when free."""
    try:
        raw = client.get(key)
    except redis.RedisError as exc:
        raise LockServiceUnavailable(f"cannot read lock {key}: {exc}") from exc
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def remaining_ttl_s(client: redis.Redis, key: str) -> float | None:
    """Seconds until a held lock expires by itself; None when the lock is free."""
    try:
        pttl = int(client.pttl(key))
    except redis.RedisError as exc:
        raise LockServiceUnavailable(f"cannot read lock {key}: {exc}") from exc
    # -2: no such key (free); -1: a key without expiry, which no lock of ours leaves.
    return None if pttl == -2 else max(pttl, 0) / 1000.0
