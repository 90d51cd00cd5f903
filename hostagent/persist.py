"""Where the protocol state lives: a JSON file replaced atomically, or memory (simulators)."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Protocol

from models.errors import InvalidInput

STATE_FILE = "state.json"


class StateStore(Protocol):
    """Keeps the protocol state document (fences and init records) between calls and restarts."""

    def load(self) -> dict[str, Any]:
        """Return the last saved document, or an empty one."""
        ...

    def save(self, document: dict[str, Any]) -> None:
        """Replace the saved document; durable when this returns."""
        ...


class MemoryStore:
    """Keeps the document in memory: for simulators and tests, lost with the process."""

    def __init__(self) -> None:
        self._document: dict[str, Any] = {}

    def load(self) -> dict[str, Any]:
        """Return a copy of the last saved document."""
        return copy.deepcopy(self._document)

    def save(self, document: dict[str, Any]) -> None:
        """Keep a copy of ``document``."""
        self._document = copy.deepcopy(document)


class DiskStore:
    """Keeps the document in ``<directory>/state.json``, replaced atomically and fsynced.

    Write a temporary file, fsync it, rename it over the old one, fsync the directory: after a
    crash the file is the old document or the new one, never a mix, and a saved fence survives.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def load(self) -> dict[str, Any]:
        """Return the saved document; refuse to guess when the file is not one."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise InvalidInput(
                "state_dir",
                f"{self.path} is not valid JSON ({exc}); the highest fence it kept is unknown, "
                "so the agent will not start: restore the file, or remove it knowingly",
            ) from exc
        if not isinstance(document, dict):
            raise InvalidInput("state_dir", f"{self.path} does not hold a JSON object")
        return document

    def save(self, document: dict[str, Any]) -> None:
        """Replace the file atomically and durably."""
        tmp = self.path.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        data = json.dumps(document, separators=(",", ":")).encode()
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
