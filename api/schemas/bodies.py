"""Request bodies: clusters, hosts, flags, VM runs (reports: `models.report_wire`)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from api.schemas.common import (
    MAX_ATTEMPTS,
    MAX_URL_LEN,
    TEXT_PATTERN,
    URL_PATTERN,
    VERSION_PATTERN,
    Id,
    Input,
    NameList,
    Text,
)
from models.agent_url import NO_CREDENTIALS


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
        if "@" in parts.netloc:
            raise ValueError(NO_CREDENTIALS)
        if port == 0:
            raise ValueError("must not name port 0")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")


#: Hosts in one batch registration.
MAX_BATCH_HOSTS = 5000


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
