"""The small ports services take as arguments: the enqueuer and the lock (the agent client's is
``autorecovery.adapters.agents.AgentClient``, beside its implementations)."""

from __future__ import annotations

from types import TracebackType
from typing import Protocol


class Enqueuer(Protocol):
    """Sends an activation to the workers (Celery in production); the task id is its id."""

    def __call__(self, activation_id: str, object_id: str, trigger: str, actor: str, /) -> None:
        """Queue the activation of a host (or a storage domain); raise BrokerUnavailable."""
        ...


class Lock(Protocol):
    """A per-object lock with an owner's token, a TTL and renewal (``adapters/locks.py``)."""

    @property
    def token(self) -> str | None:
        """The owner's token, once acquired."""
        ...

    @property
    def is_lost(self) -> bool:
        """True when a renewal found the lock no longer ours."""
        ...

    def acquire(self) -> bool:
        """Try once to take the lock; False when someone else holds it."""
        ...

    def renew(self) -> bool:
        """Reset the TTL if still owned; False when lost."""
        ...

    def release(self) -> None:
        """Release the lock if still owned."""
        ...

    def start_renewing(self) -> None:
        """Renew in the background until released."""
        ...

    def stop_renewing(self) -> None:
        """Stop renewing."""
        ...

    def __enter__(self) -> Lock:
        """Use the lock in a ``with`` block that releases it."""
        ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Release the lock."""
        ...
