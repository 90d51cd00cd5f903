"""Read a bearer token from a file, for the tools that take ``--token-file``."""

from __future__ import annotations

from pathlib import Path

from models.errors import InvalidInput


def read_token_file(path: Path) -> str:
    """Read an agent token from a file (surrounding whitespace stripped).

    Raises:
        InvalidInput: naming ``--token-file`` when the file cannot be read or is empty.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput("--token-file", f"cannot read {path}: {exc}") from exc
    if not token:
        raise InvalidInput("--token-file", f"{path} is empty")
    return token
