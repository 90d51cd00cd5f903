"""In-memory fakes of the project's ports, for unit tests; the contract tests keep them honest."""

from tests.fakes.adapters import fake_adapters, fake_container
from tests.fakes.memory import MemoryConn, MemoryDatabase
from tests.fakes.ports import FixedClock, RecordingEnqueuer
from tests.fakes.store import memory_repos

__all__ = [
    "FixedClock",
    "MemoryConn",
    "MemoryDatabase",
    "RecordingEnqueuer",
    "fake_adapters",
    "fake_container",
    "memory_repos",
]
