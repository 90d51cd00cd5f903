"""Is a secret strong enough to guard a door: no placeholder, no repetition, ~128 bits or more,
and nothing a password cracker guesses (words, keyboard walks, repeats, dates: zxcvbn).

One rule for the API's tokens (``api.auth``), Flower's passwords (``autorecovery.flower_auth``)
and the product's agent key (``AUTORECOVERY_AGENT_KEY_FILE``).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from zxcvbn import zxcvbn

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
#: zxcvbn guesses a random token in about 10 guesses per character; a token whose estimate falls
#: below this share of that, and that is mostly made of patterns the estimator knows (words,
#: keyboard walks, repeats, sequences, dates), is guessable. A random token with a readable
#: prefix (``prod-api-<hex>``) is not: most of it is no pattern.
MIN_GUESS_SHARE = 0.8
MAX_PATTERN_SHARE = 0.5
#: zxcvbn's cost grows with the length; what it sees of a longer token is enough to judge it.
ESTIMATOR_CHARS = 64
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


def is_guessable(token: str) -> bool:
    """True when zxcvbn finds the token mostly made of patterns (words, keyboard walks, repeats…)."""
    seen = token[:ESTIMATOR_CHARS]
    found = zxcvbn(seen)
    patterned = sum(len(m["token"]) for m in found["sequence"] if m["pattern"] != "bruteforce")
    few_guesses = float(found["guesses_log10"]) < MIN_GUESS_SHARE * len(seen)
    return few_guesses and patterned > MAX_PATTERN_SHARE * len(seen)


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
    if is_guessable(token):
        return (
            f"the {kind} is made of guessable parts (words, keyboard walks, repeats, dates); "
            "generate a random one, e.g. `openssl rand -hex 32`"
        )
    if estimated_bits(token) < MIN_TOKEN_BITS:
        return (
            f"the {kind} has about {estimated_bits(token):.0f} bits of entropy, below {MIN_TOKEN_BITS}; "
            "use e.g. `openssl rand -hex 32`"
        )
    return None
