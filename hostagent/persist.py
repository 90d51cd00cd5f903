"""Where the protocol state lives: a JSON file replaced atomically, or memory (simulators)."""

from __future__ import annotations

import copy
import json
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from models.errors import InvalidInput

STATE_FILE = "state.json"
#: What an operator does about a state that is missing or unusable (never done silently).
NEW_STATE_ADVICE = (
    "the highest fence it kept is unknown, so the agent will not serve: restore the file from a "
    "backup, or start the agent once with --new-state to create a new state (a new state_id: the "
    "product then tells it its fence before any init)"
)


def new_document() -> dict[str, Any]:
    """A new, empty state with a new ``state_id`` (the product sees it changed in the report)."""
    return {"state_id": uuid.uuid4().hex, "fences": {}, "records": []}


class StateStore(Protocol):
    """Keeps the protocol state document (fences and init records) between calls and restarts."""

    def load(self) -> dict[str, Any]:
        """Return the last saved document.

        Raises:
            InvalidInput: ``state_dir``, when there is none or it cannot be read.
        """
        ...

    def save(self, document: dict[str, Any]) -> None:
        """Replace the saved document; durable when this returns."""
        ...


class MemoryStore:
    """Keeps the document in memory: for simulators and tests, lost with the process."""

    def __init__(self) -> None:
        self._document: dict[str, Any] = new_document()

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
        """Return the saved document; refuse to guess when there is none or it is not one."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InvalidInput("state_dir", f"{self.path} does not exist; {NEW_STATE_ADVICE}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput("state_dir", f"cannot read {self.path} ({exc}); {NEW_STATE_ADVICE}") from None
        try:
            document = json.loads(text, parse_constant=_no_constant)
        except ValueError as exc:
            raise InvalidInput(
                "state_dir", f"{self.path} is not valid JSON ({exc}); {NEW_STATE_ADVICE}"
            ) from None
        if not isinstance(document, dict):
            raise InvalidInput("state_dir", f"{self.path} does not hold a JSON object; {NEW_STATE_ADVICE}")
        return document

    def create(self) -> str:
        """Start a new state (a new ``state_id``), keeping any old file aside; return the new id.

        Only on the operator's explicit request (``--new-state``): a lost state is never
        replaced silently.
        """
        if self.path.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            os.replace(self.path, self.path.with_name(f"{STATE_FILE}.replaced-{stamp}"))
        document = new_document()
        self.save(document)
        return str(document["state_id"])

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


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")
