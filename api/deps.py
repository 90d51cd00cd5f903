"""What routes receive: the caller (authenticated, with a role) and the process's services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from api.auth import Principal, TokenTable
from api.errors import ApiError
from api.responses import ErrorOut
from api.schemas import ID_PATTERN, SD_ID_PATTERN
from autorecovery.bootstrap import Container
from autorecovery.services.fleet import FleetService
from autorecovery.services.safety import SafetyService
from autorecovery.services.storage import StorageService
from autorecovery.services.views import FleetViews
from autorecovery.services.vmruns import VmRunService

API_PREFIX = "/api/v1"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer = HTTPBearer(
    auto_error=False,
    description="A token from AUTORECOVERY_API_TOKENS; role viewer reads, admin does everything.",
)


@dataclass
class Services:
    """What routes use: the composition root's container (built in the lifespan, or by tests)."""

    container: Container
    probes: dict[str, Callable[[], object]] = field(default_factory=dict)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def close(self) -> None:
        """Close the container's adapters."""
        self.container.close()


def bearer_token(request: Request) -> str | None:
    """Return the bearer token of the request, or None when there is none."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(request: Request) -> Principal:
    """Return the caller.

    Raises:
        ApiError: 401 with ``WWW-Authenticate: Bearer`` without a token or with an unknown one.
    """
    tokens: TokenTable = request.app.state.tokens
    token = bearer_token(request)
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "a bearer token is required",
            headers={"WWW-Authenticate": 'Bearer realm="autorecovery"'},
        )
    principal = tokens.authenticate(token)
    if principal is None:
        raise ApiError(
            401,
            "unauthorized",
            "the bearer token is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="autorecovery", error="invalid_token"'},
        )
    return principal


def authorize(request: Request) -> Principal:
    """Authenticate, then refuse a viewer anything but a read (403)."""
    principal = authenticate(request)
    if request.method not in _READ_METHODS and not principal.can_write:
        raise ApiError(403, "forbidden", f"token {principal.name!r} is a viewer; this needs admin")
    return principal


def reauthenticate(request: Request) -> None:
    """Check the caller of an API route whose input failed validation (see ``errors.install``)."""
    if request.url.path.startswith(API_PREFIX) or request.url.path == "/metrics":
        authorize(request)


def _viewer(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    return authenticate(request)


def _admin(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    principal = authenticate(request)
    if not principal.can_write:
        raise ApiError(403, "forbidden", f"token {principal.name!r} is a viewer; this needs admin")
    return principal


def services(request: Request) -> Services:
    """Return the process's services.

    Raises:
        ApiError: 503 while the lifespan has not built them.
    """
    found: Services | None = getattr(request.app.state, "services", None)
    if found is None:
        raise ApiError(503, "starting", "the API is starting or stopping", headers={"Retry-After": "1"})
    return found


def _fleet(request: Request) -> FleetService:
    return services(request).container.fleet


def _views(request: Request) -> FleetViews:
    return services(request).container.views


def _safety(request: Request) -> SafetyService:
    return services(request).container.safety


def _storage(request: Request) -> StorageService:
    return services(request).container.storage


def _vmruns(request: Request) -> VmRunService:
    return services(request).container.vmruns


Viewer = Annotated[Principal, Depends(_viewer)]
Admin = Annotated[Principal, Depends(_admin)]
Fleet = Annotated[FleetService, Depends(_fleet)]
Views = Annotated[FleetViews, Depends(_views)]
Safety = Annotated[SafetyService, Depends(_safety)]
Storage = Annotated[StorageService, Depends(_storage)]
VmRuns = Annotated[VmRunService, Depends(_vmruns)]
HostId = Annotated[str, Path(pattern=ID_PATTERN, max_length=128, description="host id", examples=["h-0001"])]
ClusterId = Annotated[
    str, Path(pattern=ID_PATTERN, max_length=128, description="cluster id", examples=["c-1"])
]
StorageDomainId = Annotated[
    str, Path(pattern=SD_ID_PATTERN, max_length=128, description="storage domain id", examples=["sd-1"])
]


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error answers a route gives, all in the one shape."""
    texts = {
        400: "bad request",
        401: "no or bad token",
        403: "viewer token on a write",
        404: "unknown object",
        409: "conflicts with the object's state",
        413: "body too large",
        422: "invalid input; `field` names it",
        503: "a dependency is unavailable",
    }
    return {code: {"model": ErrorOut, "description": texts.get(code, "error")} for code in codes}
