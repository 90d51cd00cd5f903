"""Request bodies and query parameters: unknown fields are refused, types are not coerced."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from models.domain import HostStatus

#: Host and cluster ids: what fits in a URL path segment, a log line and a Celery kwarg.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: Networks, storage domains and CPU flags.
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._:/+-]{0,127}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
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


class ClusterIn(Input):
    """A cluster and its requirements (agent protocol v1, registration)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "c-1",
                    "required_networks": ["mgmt"],
                    "storage_domains": ["sd-1"],
                    "min_version": "4.5",
                    "cpu_flags": ["vmx"],
                }
            ]
        }
    )

    id: Id
    required_networks: NameList = Field(default_factory=list)
    storage_domains: NameList = Field(default_factory=list)
    min_version: Annotated[str, StringConstraints(pattern=VERSION_PATTERN, max_length=64)] = "0"
    cpu_flags: NameList = Field(default_factory=list)


class HostIn(Input):
    """A host to register: its id, its cluster and where its agent answers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": "h-0002", "cluster": "c-1", "agent_url": "http://127.0.0.1:9/agents/h-0002"}]
        }
    )

    id: Id
    cluster: Id
    agent_url: Annotated[str, StringConstraints(pattern=URL_PATTERN, max_length=MAX_URL_LEN)]
    adopt: bool = Field(
        False,
        description="bring an existing, healthy host under management: its first clean report "
        "marks it up without an init (a report with a problem takes the normal way)",
    )

    @field_validator("agent_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"is not a valid URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("must not carry credentials")
        if port == 0:
            raise ValueError("must not name port 0")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")


#: Hosts in one batch registration, and reports in one bulk push.
MAX_BATCH_HOSTS = 5000
MAX_BULK_REPORTS = 1000


class HostBatchIn(Input):
    """Many hosts to register at once: all of them, or none when any has a problem."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hosts": [{"id": "h-0100", "cluster": "c-1", "agent_url": "http://10.0.0.100:8901"}],
                    "dry_run": True,
                }
            ]
        }
    )

    hosts: list[HostIn] = Field(min_length=1, max_length=MAX_BATCH_HOSTS)
    dry_run: bool = Field(False, description="check every host and write nothing")


class AutorecoveryIn(Input):
    """Turn a host's autorecovery on or off."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"enabled": False}]})

    enabled: bool


class MaintenanceIn(Input):
    """Why a host goes into maintenance."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "replacing a DIMM"}]})

    reason: Text | None = None


class AttemptIn(Input):
    """One try to start the VM: on which host, and whether it started (else the error)."""

    host: Id
    ok: bool
    error: Annotated[str, StringConstraints(pattern=TEXT_PATTERN, max_length=1000)] | None = None


class VmRunIn(Input):
    """A VM's placement attempts, in the order the scheduler made them.

    A host is charged when the VM failed on it and then started on another host.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "vm_id": "vm-0042",
                    "attempts": [
                        {"host": "h-0001", "ok": False, "error": "qemu-kvm: failed to start the VM"},
                        {"host": "h-0002", "ok": True, "error": None},
                    ],
                }
            ]
        }
    )

    vm_id: Id
    attempts: list[AttemptIn] = Field(min_length=1, max_length=MAX_ATTEMPTS)


class ReportIn(BaseModel):
    """A monitoring report (agent protocol v1); documented here, validated by ``parse_report``.

    Unknown fields are ignored, as the protocol says.
    """

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "host_id": "h-0001",
                    "reported_at": "2026-11-24T12:00:00Z",
                    "kvm": True,
                    "version": "4.5.2",
                    "cpu_flags": ["vmx", "sse4_2"],
                    "networks": {"mgmt": True},
                    "storage_domains": {"sd-1": True},
                    "vms_running": 3,
                    "mem_free_mb": 12000,
                }
            ]
        },
    )

    host_id: str
    reported_at: datetime
    kvm: bool
    version: str
    cpu_flags: list[str]
    networks: dict[str, bool]
    storage_domains: dict[str, bool]
    vms_running: int = Field(ge=0, le=2**31 - 1)
    mem_free_mb: int = Field(ge=0, le=2**31 - 1)


class ReportsIn(Input):
    """Reports of many hosts pushed at once (agent protocol v1 each, like ``ReportIn``).

    Each report is judged on its own; the answer says which were accepted and why others were
    refused.
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reports": [ReportIn.model_json_schema()["examples"][0]]}]}
    )

    reports: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BULK_REPORTS)


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


class PlanQuery(QueryInput):
    """Filter of ``GET /plan``."""

    cluster: Id | None = None


#: RFC 3339 date-time with a zone: what ``expires_at`` takes (no bare dates, no Unix times).
RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
_RFC3339 = re.compile(RFC3339_PATTERN)
#: The longest pause a duration may ask for; beyond that, pause until lifted.
MAX_PAUSE_S = 366 * 86400.0


def parse_rfc3339(value: object) -> datetime:
    """Parse an RFC 3339 date-time with a zone.

    Raises:
        ValueError: anything else (a number, a bare date, no zone, an impossible date).
    """
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError("must be an RFC 3339 date-time with a zone, e.g. 2026-01-01T00:00:00Z")
    text = value.upper().replace(" ", "T")
    # fromisoformat takes at most microseconds: drop the extra digits of nanoseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("is not a valid date-time") from None


class PauseIn(Input):
    """Stop automatic activation: why, and until when (``expires_at`` or ``duration_s``).

    With neither, the pause lasts until an admin lifts it. Manual activation still works.
    """

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "storage migration", "duration_s": 3600}]}
    )

    reason: Text
    expires_at: datetime | None = Field(None, description="RFC 3339 with a zone, in the future")
    duration_s: float | None = Field(
        None, gt=0, le=MAX_PAUSE_S, allow_inf_nan=False, description="pause for this many seconds from now"
    )

    @field_validator("expires_at", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> object:
        return None if value is None else parse_rfc3339(value)

    @field_validator("duration_s")
    @classmethod
    def _one_expiry(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and info.data.get("expires_at") is not None:
            raise ValueError("give expires_at or duration_s, not both")
        return value
