"""Flower's users (``FLOWER_BASIC_AUTH``) checked before Flower starts: Flower itself takes any.

Flower splits the variable on commas and compares each ``user:password`` entry, as it is, with
what a browser sends; the user part of HTTP basic auth holds no colon (RFC 7617), the password
may. Each password must pass the rule the API's tokens pass (``autorecovery.secret_strength``).
"""

from __future__ import annotations

import re

from autorecovery.secret_strength import weak_token_reason
from models.errors import InvalidInput

FLOWER_VAR = "FLOWER_BASIC_AUTH"
_USER = re.compile(r"[!-9;-~]{1,64}")  # printable ASCII without a colon or a space


def check_flower_auth(raw: str) -> list[str]:
    """Return the users of a ``user:password[,user:password…]`` value fit to guard Flower.

    Raises:
        InvalidInput: naming FLOWER_BASIC_AUTH when it is empty, an entry is not
            ``user:password``, a user is given twice, or a password is weak; the message
            names the entry by position and user, never by its password.
    """
    if not raw.strip():
        raise InvalidInput(FLOWER_VAR, "is empty; set user:password (e.g. operator:$(openssl rand -hex 32))")
    users: list[str] = []
    for position, entry in enumerate(raw.split(","), start=1):
        user, sep, password = entry.partition(":")
        # An entry without a colon may be all password: it is named by position only.
        if not sep or not _USER.fullmatch(user):
            rule = "the user is 1-64 printable characters, no colon"
            raise InvalidInput(FLOWER_VAR, f"entry {position} is not user:password ({rule})")
        if user in users:  # Flower would take the first and silently keep the second around
            raise InvalidInput(FLOWER_VAR, f"entry {position}: user {user!r} is given twice")
        weak = weak_token_reason(password, kind="password")
        if weak is not None:
            raise InvalidInput(FLOWER_VAR, f"entry {position} (user {user!r}): {weak}")
        users.append(user)
    return users
