"""Bearer tokens with roles: parsed and validated at start, compared in constant time.

``AUTORECOVERY_API_TOKENS`` holds ``name:role:token`` entries, comma-separated; the role is
``viewer`` (reads), ``admin`` (everything) or ``reporter`` (pushes reports only, for the hosts
named after a last colon: ``name:reporter:token:h-1|h-2``); the name is the actor written to the
audit log. Placeholders (``CHANGE_ME…``) and tokens of low estimated entropy are refused at start
(``autorecovery.secret_strength``, the rule Flower's passwords meet too).
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

from autorecovery.secret_strength import weak_token_reason
from autorecovery.settings import Settings
from models.errors import InvalidInput

log = logging.getLogger(__name__)

TOKENS_VAR = "AUTORECOVERY_API_TOKENS"
DEV_VAR = "AUTORECOVERY_API_DEV_TOKEN"
DEV_TOKEN_FILE = "admin-token"  # noqa: S105 (a file name)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # api.schemas.ID_PATTERN


class Role(StrEnum):
    """What a token may do."""

    VIEWER = "viewer"
    ADMIN = "admin"
    REPORTER = "reporter"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's name (the audit actor), its role, and a reporter's hosts."""

    name: str
    role: Role
    hosts: frozenset[str] = frozenset()

    @property
    def can_write(self) -> bool:
        """True when the caller may change anything."""
        return self.role is Role.ADMIN

    @property
    def can_read(self) -> bool:
        """True when the caller may read the fleet (a reporter may not)."""
        return self.role in (Role.ADMIN, Role.VIEWER)

    def can_report(self, host_id: str) -> bool:
        """True when the caller may push a report for ``host_id``."""
        return self.role is Role.ADMIN or (self.role is Role.REPORTER and host_id in self.hosts)


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    digest: bytes


def _digest(token: str) -> bytes:
    # Comparing fixed-size digests keeps compare_digest's time independent of the token length.
    return hashlib.sha256(token.encode("utf-8")).digest()


class TokenTable:
    """The configured tokens, kept only as SHA-256 digests."""

    def __init__(self, entries: list[tuple[Principal, str]]) -> None:
        self._entries = tuple(_Entry(p, _digest(t)) for p, t in entries)

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


def _reporter_hosts(where: str, secret: str) -> tuple[str, frozenset[str]]:
    # The hosts follow the token's last colon: host ids have no colon, tokens may.
    token, sep, listed = secret.rpartition(":")
    hosts = [h.strip() for h in listed.split("|")]
    if not sep or not token or not all(_HOST_ID.fullmatch(h) for h in hosts):
        raise InvalidInput(
            TOKENS_VAR, f"{where}: a reporter entry is name:reporter:token:HOST[|HOST...] (host ids)"
        )
    return token, frozenset(hosts)


def parse_tokens(raw: str) -> TokenTable:
    """Parse ``name:role:token`` entries (``name:reporter:token:h-1|h-2``), comma-separated.

    Raises:
        InvalidInput: naming AUTORECOVERY_API_TOKENS; the message names the entry by position
            and name, never by its token.
    """
    entries: list[tuple[Principal, str]] = []
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
            raise InvalidInput(TOKENS_VAR, f"{where}: role must be viewer, admin or reporter")
        hosts: frozenset[str] = frozenset()
        if role == Role.REPORTER:
            token, hosts = _reporter_hosts(where, token)
        weak = weak_token_reason(token)
        if weak is not None:
            raise InvalidInput(TOKENS_VAR, f"{where}: {weak}")
        if name in names:
            raise InvalidInput(TOKENS_VAR, f"{where}: the name is used twice")
        if _digest(token) in digests:
            raise InvalidInput(TOKENS_VAR, f"{where}: the token is used by an earlier entry")
        names.add(name)
        digests.add(_digest(token))
        entries.append((Principal(name, Role(role), hosts), token))
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
