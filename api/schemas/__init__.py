"""Request bodies and query parameters: unknown fields are refused, types are not coerced."""

from api.schemas.bodies import (
    AttemptIn,
    AutorecoveryIn,
    ClusterIn,
    HostBatchIn,
    HostIn,
    MaintenanceIn,
    VmRunIn,
)
from api.schemas.common import (
    ID_PATTERN,
    MAX_ATTEMPTS,
    NAME_PATTERN,
    SD_ID_PATTERN,
    TEXT_PATTERN,
    URL_PATTERN,
    VERSION_PATTERN,
)
from api.schemas.pauses import MAX_PAUSE_S, PauseIn, parse_rfc3339
from api.schemas.queries import ActivateQuery, AuditQuery, HostQuery, PlanQuery

__all__ = [
    "ID_PATTERN",
    "MAX_ATTEMPTS",
    "MAX_PAUSE_S",
    "NAME_PATTERN",
    "SD_ID_PATTERN",
    "TEXT_PATTERN",
    "URL_PATTERN",
    "VERSION_PATTERN",
    "ActivateQuery",
    "AttemptIn",
    "AuditQuery",
    "AutorecoveryIn",
    "ClusterIn",
    "HostBatchIn",
    "HostIn",
    "HostQuery",
    "MaintenanceIn",
    "PauseIn",
    "PlanQuery",
    "VmRunIn",
    "parse_rfc3339",
]
