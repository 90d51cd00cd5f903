"""The project's exception tree: transient errors may be retried, permanent ones may not."""

from __future__ import annotations


class AutorecoveryError(Exception):
    """Root of every error this project raises on purpose."""


class TransientError(AutorecoveryError):
    """A failure that may go away on retry (a service down, a timeout)."""


class PermanentError(AutorecoveryError):
    """A failure that a retry cannot fix (bad input, unknown object)."""


class StoreUnavailable(TransientError):
    """PostgreSQL could not be reached or the statement was interrupted."""


class LockServiceUnavailable(TransientError):
    """Redis could not be reached for a lock operation."""


class LockLost(LockServiceUnavailable):
    """The object's lock is no longer ours: no side effect may follow."""


class AgentUnavailable(TransientError):
    """A host agent did not answer in time or could not be reached."""


class AgentBusy(TransientError):
    """The agent refused an init because another init runs on its host (protocol v2, 409 busy)."""

    def __init__(self, message: str, activation_id: str | None = None, fence: int | None = None) -> None:
        super().__init__(message)
        self.activation_id = activation_id
        self.fence = fence


class InitOutcomeUnknown(TransientError):
    """An init call may have reached the agent, but its answer was not seen (timeout, lost link).

    Never a failed init: the init may still be running on the host.
    """


class BrokerUnavailable(TransientError):
    """The Celery broker refused or could not take a message."""


class ActivationFailed(PermanentError):
    """An activation ended failed, already recorded; raised so that task monitors show it failed."""


class BadReport(PermanentError):
    """A monitoring report is missing a field, has a wrong type, or names another host."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(PermanentError):
    """The named object does not exist."""

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id!r} not found")
        self.kind = kind
        self.object_id = object_id


class Conflict(PermanentError):
    """The request conflicts with the object's current state."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class InvalidInput(PermanentError):
    """A value given by a caller is not acceptable; names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class StaleFence(PermanentError):
    """A write or agent call carried a fencing token older than the current one."""

    def __init__(self, message: str, highest: int | None = None) -> None:
        super().__init__(message)
        self.highest = highest
