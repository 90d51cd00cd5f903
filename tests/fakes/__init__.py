"""In-memory fakes of the project's ports, for unit tests; the contract tests keep them honest."""

from tests.fakes.store import MemoryConn, MemoryDatabase, memory_repos

__all__ = ["MemoryConn", "MemoryDatabase", "memory_repos"]
