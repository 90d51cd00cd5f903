"""What every body and query shares: id and text patterns, strict models, plain numbers."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

#: Host and cluster ids: what fits in a URL path segment, a log line and a Celery kwarg.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: Networks, storage domains and CPU flags.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:/+-]{0,127}$"
#: A cluster's minimum version: dotted numbers, as ``models.assessment.version_tuple`` compares them
#: (``four`` would compare as the empty version and let every host pass).
VERSION_PATTERN = r"^[0-9]{1,9}(\.[0-9]{1,9}){0,15}$"
#: Free text: no C0/C1 control characters (PostgreSQL refuses NUL; logs should not get escapes),
#: no line/paragraph separators and no bidirectional formatting (they spoof CLI and log lines).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]*$"
URL_PATTERN = r"^https?://[!-~]+$"
#: Storage domain ids in a path: a name without ``/``, which would split the path segment.
SD_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:+-]{0,127}$"
MAX_URL_LEN = 2048
#: Attempts in one VM run: a scheduler gives up long before this.
MAX_ATTEMPTS = 20
MAX_LIST = 256
MAX_PAGE = 1000
MAX_WAIT_S = 120.0

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN, max_length=128)]
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=128)]
Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN, min_length=1, max_length=500)]


class Input(BaseModel):
    """Base of request bodies: unknown fields are refused, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True)


_PLAIN_INT = re.compile(r"[0-9]{1,19}")
_PLAIN_DECIMAL = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")


def _plain_int(value: object) -> object:
    # Python's int() also reads "1_0" as 10, " 7" and "+7": a query number is digits only.
    if isinstance(value, str) and not _PLAIN_INT.fullmatch(value):
        raise ValueError("must be a whole number written with digits only")
    return value


def _plain_decimal(value: object) -> object:
    if isinstance(value, str) and not _PLAIN_DECIMAL.fullmatch(value):
        raise ValueError("must be a number written with digits and at most one '.', e.g. 2.5")
    return value


#: Numbers in query strings: digits only (no "1_0", "1e3", "+1", " 1", "inf").
QueryInt = Annotated[int, BeforeValidator(_plain_int)]
QueryFloat = Annotated[float, BeforeValidator(_plain_decimal)]


class QueryInput(BaseModel):
    """Base of query-parameter sets: unknown parameters are refused (a typo is not a no-op)."""

    model_config = ConfigDict(extra="forbid")


def _unique(values: list[str]) -> list[str]:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"lists {value!r} twice")
        seen.add(value)
    return values


NameList = Annotated[list[Name], Field(max_length=MAX_LIST), AfterValidator(_unique)]


