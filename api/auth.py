"""Bearer tokens with roles: parsed and validated at start, compared in constant time.

``AUTORECOVERY_API_TOKENS`` holds ``name:role:token`` entries, comma-separated; the role is
``viewer`` (reads) or ``admin`` (everything) and the name is the actor written to the audit log.
With no token configured the API refuses to start, unless ``AUTORECOVERY_API_DEV_TOKEN`` is set
on a loopback bind: then an admin token named ``admin`` is read from, or created in,
``<data_dir>/admin-token`` (the file ``autorecovery up`` uses), and only its path is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from autorecovery.settings import Settings
from models.errors import InvalidInput

log = logging.getLogger(__name__)

TOKENS_VAR = "AUTORECOVERY_API_TOKENS"
DEV_VAR = "AUTORECOVERY_API_DEV_TOKEN"
DEV_TOKEN_FILE = "admin-token"  # noqa: S105 (a file name)
MIN_TOKEN_LEN = 16
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space: what fits in an Authorization header


class Role(StrEnum):
    """What a token may do."""

    VIEWER = "viewer"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (the audit actor) and its role."""

    name: str
    role: Role

    @property
    def can_write(self) -> bool:
        """True when the caller may change anything."""
        return self.role is Role.ADMIN


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    digest: bytes


def _digest(token: str) -> bytes:
    # Comparing fixed-size digests keeps compare_digest's time independent of the token length.
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenTable:
    """The configured tokens, kept only as SHA-256 digests."""

    def __init__(self, entries: list[tuple[str, Role, str]]) -> None:
        self._entries = tuple(_Entry(Principal(n, r), _digest(t)) for n, r, t in entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def names(self) -> list[str]:
        """The token names (never the tokens), for logs."""
        return [e.principal.name for e in self._entries]

    def authenticate(self, token: str) -> Principal | None:
        """Return the principal whose token is ``token``, or None.

        Every configured token is compared, whether an earlier one matched or not, so the time
        taken says nothing about which token (or how much of one) was right.
        """
        given = _digest(token)
        found: Principal | None = None
        for entry in self._entries:
            if hmac.compare_digest(given, entry.digest):
                found = entry.principal
        return found


def parse_tokens(raw: str) -> TokenTable:
    """Parse ``name:role:token`` entries, comma-separated.

    Raises:
        InvalidInput: naming AUTORECOVERY_API_TOKENS; the message names the entry by position
            and name, never by its token.
    """
    entries: list[tuple[str, Role, str]] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for position, chunk in enumerate(raw.split(","), start=1):
        item = chunk.strip()
        if not item:
            continue
        parts = item.split(":", 2)
        if len(parts) != 3:
            raise InvalidInput(TOKENS_VAR, f"entry {position} is not name:role:token")
        name, role, token = parts[0].strip(), parts[1].strip(), parts[2].strip()
        where = f"entry {position} ({name!r})" if _NAME.fullmatch(name) else f"entry {position}"
        if not _NAME.fullmatch(name):
            raise InvalidInput(TOKENS_VAR, f"{where}: the name must be 1-64 of A-Z a-z 0-9 . _ @ -")
        if role not in Role.__members__.values():
            raise InvalidInput(TOKENS_VAR, f"{where}: role must be viewer or admin")
        if len(token) < MIN_TOKEN_LEN or not _TOKEN.fullmatch(token):
            raise InvalidInput(
                TOKENS_VAR,
                f"{where}: the token must be at least {MIN_TOKEN_LEN} printable characters, no spaces",
            )
        if name in names:
            raise InvalidInput(TOKENS_VAR, f"{where}: the name is used twice")
        if _digest(token) in digests:
            raise InvalidInput(TOKENS_VAR, f"{where}: the token is used by an earlier entry")
        names.add(name)
        digests.add(_digest(token))
        entries.append((name, Role(role), token))
    return TokenTable(entries)


def is_loopback(host: str) -> bool:
    """True when ``host`` binds only the local machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev_token(data_dir: Path) -> tuple[str, Path]:
    """Read the local admin token, creating it (mode 0600) on first use; return it and its path."""
    path = data_dir / DEV_TOKEN_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
    return path.read_text(encoding="utf-8").strip(), path


def load_tokens(settings: Settings) -> TokenTable:
    """Return the configured tokens, or the local dev token when explicitly allowed.

    Raises:
        InvalidInput: naming AUTORECOVERY_API_TOKENS when it is malformed, or empty without
            the dev flag; naming AUTORECOVERY_API_DEV_TOKEN when the API binds beyond loopback.
    """
    table = parse_tokens(settings.api_tokens)
    if len(table):
        return table
    if not settings.api_dev_token:
        raise InvalidInput(
            TOKENS_VAR,
            "is empty; set name:role:token entries (role viewer or admin), or for a local try-out "
            f"set {DEV_VAR}=1 to use an admin token kept in <data_dir>/{DEV_TOKEN_FILE}",
        )
    if not is_loopback(settings.api_host):
        raise InvalidInput(
            DEV_VAR, f"is only allowed when the API binds to loopback, not {settings.api_host!r}"
        )
    token, path = dev_token(settings.data_dir)
    log.warning("API: no tokens configured; dev admin token (actor 'admin') is in %s", path)
    return parse_tokens(f"admin:admin:{token}")
