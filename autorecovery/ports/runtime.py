"""The small ports services take as arguments: the enqueuer and the lock (the agent client's is
``autorecovery.adapters.agents.AgentClient``, beside its implementations)."""

from __future__ import annotations

from typing import Protocol


class Enqueuer(Protocol):
    """Sends an activation to the workers (Celery in production); the task id is its id."""

    def __call__(self, activation_id: str, object_id: str, trigger: str, actor: str, /) -> None:
        """Queue the activation of a host (or a storage domain); raise BrokerUnavailable."""
        ...


class CheckSender(Protocol):
    """Sends a sent activation's check step at once under a given task id (Celery in production)."""

    def __call__(self, activation_id: str, object_id: str, trigger: str, actor: str, task_id: str, /) -> None:
        """Queue the check step; raise BrokerUnavailable."""
        ...


class Lock(Protocol):
    """A per-object lock with an owner's token and a TTL (``adapters/locks.py``).

    It guards one short step of an activation (begin and send; close): the step's time limit is
    below the TTL, so it needs no renewal. The activation's record and fence are its lease.
    """

    @property
    def key(self) -> str:
        """The lock's key."""
        ...

    def acquire(self, owner: str = "") -> bool:
        """Try once to take the lock (``owner`` prefixes the token); False when someone holds it.

        Raises:
            LockServiceUnavailable: Redis did not answer.
        """
        ...

    def is_owned(self) -> bool:
        """Ask Redis now whether the lock is still ours; False when lost or Redis cannot say."""
        ...

    def holder(self) -> str | None:
        """The token of whoever holds the lock now, None when free.

        Raises:
            LockServiceUnavailable: Redis did not answer.
        """
        ...

    def remaining_ttl_s(self) -> float | None:
        """Seconds until the held lock expires by itself; None when free."""
        ...

    def release(self) -> None:
        """Release the lock if still owned."""
        ...


class LockFactory(Protocol):
    """Makes the lock on one key (``Adapters.lock``; fakeredis in unit tests)."""

    def __call__(self, key: str, ttl_s: float, /) -> Lock:
        """The lock on ``key`` with a TTL of ``ttl_s``."""
        ...
