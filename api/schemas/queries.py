"""Query parameters: filters, pages, waits (plain digits only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    Field,
    StringConstraints,
    field_validator,
)

from api.schemas.common import (
    MAX_PAGE,
    MAX_WAIT_S,
    Id,
    QueryFloat,
    QueryInput,
    QueryInt,
)
from api.schemas.pauses import parse_rfc3339
from models.audit_events import is_audit_event
from models.domain import HostStatus


class HostQuery(QueryInput):
    """Filters and page of ``GET /hosts``."""

    status: HostStatus | None = None
    cluster: Id | None = None
    autorecovery: bool | None = None
    limit: QueryInt = Field(100, ge=1, le=MAX_PAGE)
    after: Id | None = Field(None, description="the last id of the previous page")


class ActivateQuery(QueryInput):
    """Options of ``POST /hosts/{id}/activate``."""

    wait_s: QueryFloat = Field(
        0.0,
        ge=0.0,
        le=MAX_WAIT_S,
        allow_inf_nan=False,
        description="wait up to this long for the outcome (200), else 202",
    )
    force: bool = Field(
        False, description="init the host even though its fresh report shows a problem (audited)"
    )


class AuditQuery(QueryInput):
    """Filters and page of ``GET /audit``, newest first."""

    object_type: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")] | None = None
    object_id: Id | None = None
    actor: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._@-]{1,64}$")] | None = None
    event: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,64}$")] | None = None
    since: datetime | None = Field(None, description="RFC 3339 with a zone, e.g. 2026-01-01T00:00:00Z")
    limit: QueryInt = Field(100, ge=1, le=MAX_PAGE)
    before: QueryInt | None = Field(None, ge=1, le=2**63 - 1, description="the last id of the previous page")

    @field_validator("since", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        # Not pydantic's parsing, which also reads "68023" as a Unix time.
        return None if value is None else parse_rfc3339(value)

    @field_validator("event")
    @classmethod
    def _known_event(cls, value: str | None) -> str | None:
        # A misspelt event is an error, not an empty page that reads as "it never happened".
        if value is not None and not is_audit_event(value):
            raise ValueError(f"{value!r} is not an audit event (`autorecovery audit --events` lists them)")
        return value


class PlanQuery(QueryInput):
    """Filter of ``GET /plan``."""

    cluster: Id | None = None


