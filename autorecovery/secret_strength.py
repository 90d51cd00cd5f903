"""Is a secret strong enough to guard a door: no placeholder, no repetition, ~128 bits or more.

One rule for the API's tokens (``api.auth``) and Flower's passwords (``autorecovery.flower_auth``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

MIN_TOKEN_LEN = 16
#: A token must be worth at least this many bits by the estimate of ``estimated_bits``.
MIN_TOKEN_BITS = 128
#: Below this many bits per character (Shannon, over the token's own characters), a token
#: repeats itself: ``aaaaaaaaaaaaaaaa``, ``abababab…``.
MIN_BITS_PER_CHAR = 2.5
#: Words of the examples shipped in deploy/ and of documentation: never a real secret.
PLACEHOLDERS = ("change_me", "changeme", "change-me", "replace_me", "replaceme", "placeholder", "example")
_TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space: what fits in an Authorization header
_CLASSES = ((re.compile(r"[a-z]"), 26), (re.compile(r"[A-Z]"), 26), (re.compile(r"[0-9]"), 10))
_SYMBOLS = 33  # printable ASCII that is neither a letter nor a digit
_HEX = re.compile(r"[0-9a-fA-F]+")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+=*")


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


def weak_token_reason(token: str, kind: str = "token") -> str | None:
    """Say why ``token`` may not guard a door (without quoting it), or None when it may.

    ``kind`` names the secret in the reason: "token" for the API, "password" for Flower.
    """
    if len(token) < MIN_TOKEN_LEN or not _TOKEN.fullmatch(token):
        return f"the {kind} must be at least {MIN_TOKEN_LEN} printable characters, no spaces"
    lowered = token.lower()
    if any(word in lowered for word in PLACEHOLDERS):
        return f"the {kind} is a placeholder from an example; generate one, e.g. `openssl rand -hex 32`"
    if is_repetitive(token):
        return f"the {kind} repeats itself (too few distinct characters); generate a random one"
    if estimated_bits(token) < MIN_TOKEN_BITS:
        return (
            f"the {kind} has about {estimated_bits(token):.0f} bits of entropy, below {MIN_TOKEN_BITS}; "
            "use e.g. `openssl rand -hex 32`"
        )
    return None
