"""Bearer tokens with roles: parsed and validated at start, compared in constant time.

``AUTORECOVERY_API_TOKENS`` holds ``name:role:token`` entries, comma-separated; the role is
``viewer`` (reads), ``admin`` (everything) or ``reporter`` (pushes reports only, for the hosts
named after a last colon: ``name:reporter:token:h-1|h-2``); the name is the actor written to the
audit log. Placeholders (``CHANGE_ME…``) and tokens of low estimated entropy are refused at start.
With no token configured the API refuses to start, unless ``AUTORECOVERY_API_DEV_TOKEN`` is set
on a loopback bind: then an admin token named ``admin`` is read from, or created in,
``<data_dir>/admin-token`` (the file ``autorecovery up`` uses), and only its path is logged.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import re
import secrets
from collections import Counter
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
#: A token must be worth at least this many bits by the estimate of ``estimated_bits``.
MIN_TOKEN_BITS = 128
#: Below this many bits per character (Shannon, over the token's own characters), a token
#: repeats itself: ``aaaaaaaaaaaaaaaa``, ``abababab…``.
MIN_BITS_PER_CHAR = 2.5
#: Words of the examples shipped in deploy/ and of documentation: never a real secret.
PLACEHOLDERS = ("change_me", "changeme", "change-me", "replace_me", "replaceme", "placeholder", "example")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space: what fits in an Authorization header
_HOST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # api.schemas.ID_PATTERN
_CLASSES = ((re.compile(r"[a-z]"), 26), (re.compile(r"[A-Z]"), 26), (re.compile(r"[0-9]"), 10))
_SYMBOLS = 33  # printable ASCII that is neither a letter nor a digit
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+=*")


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


def estimated_bits(token: str) -> float:
    """Estimate a token's entropy in bits: its length times log2 of the alphabet it draws from.

    The alphabet is hex (16) for a hex token, base64 (64) for a token of base64 characters that
    mixes at least two of lower case, upper case and digits (what ``secrets.token_urlsafe`` and
    ``openssl rand -base64`` give), else the sum of the character classes it uses (26, 26, 10,
    33 for other printable ASCII). It overrates a token that repeats itself, which
    ``is_repetitive`` catches.
    """
    used = [size for pattern, size in _CLASSES if pattern.search(token)]
    if _HEX.fullmatch(token):
        pool = 16
    elif _BASE64.fullmatch(token) and len(used) >= 2:
        pool = 64
    else:
        pool = sum(used) + (_SYMBOLS if re.search(r"[^A-Za-z0-9]", token) else 0)
    return len(token) * math.log2(pool) if pool > 1 else 0.0


def is_repetitive(token: str) -> bool:
    """True when the token's characters carry less than ``MIN_BITS_PER_CHAR`` bits each."""
    counts = Counter(token)
    shannon = -sum(n / len(token) * math.log2(n / len(token)) for n in counts.values())
    return shannon < MIN_BITS_PER_CHAR


def weak_token_reason(token: str) -> str | None:
    """Say why ``token`` may not guard the API (without quoting it), or None when it may."""
    if len(token) < MIN_TOKEN_LEN or not _TOKEN.fullmatch(token):
        return f"the token must be at least {MIN_TOKEN_LEN} printable characters, no spaces"
    lowered = token.lower()
    if any(word in lowered for word in PLACEHOLDERS):
        return "the token is a placeholder from an example; generate one, e.g. `openssl rand -hex 32`"
    if is_repetitive(token):
        return "the token repeats itself (too few distinct characters); generate a random one"
    if estimated_bits(token) < MIN_TOKEN_BITS:
        return (
            f"the token has about {estimated_bits(token):.0f} bits of entropy, below {MIN_TOKEN_BITS}; "
            "use e.g. `openssl rand -hex 32`"
        )
    return None


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
