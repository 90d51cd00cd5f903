"""What routes receive: the caller (authenticated, with a role) and the process's services."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from api.auth import Principal, Role, TokenTable
from api.errors import ApiError
from api.guard import bearer_from_headers, forbidden, is_protected, unauthorized
from api.responses import ErrorOut
from api.schemas import ID_PATTERN, SD_ID_PATTERN
from autorecovery.bootstrap import Container
from autorecovery.services.agent_hold import AgentHoldService
from autorecovery.services.fleet import FleetService
from autorecovery.services.intake import ReportIntake
from autorecovery.services.onboarding import OnboardingService
from autorecovery.services.safety import SafetyService
from autorecovery.services.storage import StorageService
from autorecovery.services.views import FleetViews
from autorecovery.services.vmruns import VmRunService

API_PREFIX = "/api/v1"

bearer = HTTPBearer(
    auto_error=False,
    description="A token from AUTORECOVERY_API_TOKENS; role viewer reads, admin does everything, "
    "reporter pushes reports for its hosts only.",
)


@dataclass
class Services:
    """What routes use: the composition root's container (built in the lifespan, or by tests)."""

    container: Container
    probes: dict[str, Callable[[], object]] = field(default_factory=dict)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    #: What the API itself opened beside the container (the readiness probes' connections).
    on_close: Callable[[], None] = field(default=lambda: None)

    def close(self) -> None:
        """Close the probes' connections, then the container's adapters."""
        self.on_close()
        self.container.close()


def bearer_token(request: Request) -> str | None:
    """Return the bearer token of the request, or None when there is none."""
    return bearer_from_headers(request.scope["headers"])


def authenticate(request: Request) -> Principal:
    """Return the caller.

    Raises:
        ApiError: 401 with ``WWW-Authenticate: Bearer`` without a token or with an unknown one.
    """
    tokens: TokenTable = request.app.state.tokens
    token = bearer_token(request)
    if token is None:
        raise unauthorized("a bearer token is required", invalid=False)
    principal = tokens.authenticate(token)
    if principal is None:
        raise unauthorized("the bearer token is not valid", invalid=True)
    return principal


def authorize(request: Request) -> Principal:
    """Authenticate, then refuse what the token's role does not allow (403)."""
    principal = authenticate(request)
    refused = forbidden(principal, request.method, request.url.path)
    if refused is not None:
        raise refused
    return principal


def reauthenticate(request: Request) -> None:
    """Check the caller of an API route whose input failed validation (see ``errors.install``)."""
    if is_protected(request.url.path):
        authorize(request)


async def _viewer(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    principal = authenticate(request)
    if not principal.can_read:
        raise ApiError(403, "forbidden", f"token {principal.name!r} is a reporter; it may not read")
    return principal


async def _admin(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    principal = authenticate(request)
    if not principal.can_write:
        raise ApiError(403, "forbidden", f"token {principal.name!r} is a {principal.role}; this needs admin")
    return principal


async def _pusher(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    principal = authenticate(request)
    if principal.role is Role.VIEWER:
        raise ApiError(
            403, "forbidden", f"token {principal.name!r} is a viewer; this needs admin or reporter"
        )
    return principal


async def _host_pusher(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
) -> Principal:
    principal = await _pusher(request, _)
    host_id = str(request.path_params.get("host_id", ""))
    if not principal.can_report(host_id):
        raise ApiError(
            403, "forbidden", f"token {principal.name!r} may not push reports for host {host_id!r}", "host_id"
        )
    return principal


# The dependencies are coroutines: FastAPI runs a plain function dependency in its threadpool,
# a thread hop (tens of microseconds) for what is a dictionary lookup.


def services(request: Request) -> Services:
    """Return the process's services.

    Raises:
        ApiError: 503 while the lifespan has not built them.
    """
    found: Services | None = getattr(request.app.state, "services", None)
    if found is None:
        raise ApiError(503, "starting", "the API is starting or stopping", headers={"Retry-After": "1"})
    return found


async def _fleet(request: Request) -> FleetService:
    return services(request).container.fleet


async def _views(request: Request) -> FleetViews:
    return services(request).container.views


async def _safety(request: Request) -> SafetyService:
    return services(request).container.safety


async def _storage(request: Request) -> StorageService:
    return services(request).container.storage


async def _vmruns(request: Request) -> VmRunService:
    return services(request).container.vmruns


async def _intake(request: Request) -> ReportIntake:
    return services(request).container.intake


async def _agent_holds(request: Request) -> AgentHoldService:
    return services(request).container.agent_holds


async def _onboarding(request: Request) -> OnboardingService:
    return services(request).container.onboarding


Viewer = Annotated[Principal, Depends(_viewer)]
Admin = Annotated[Principal, Depends(_admin)]
#: An admin, or a reporter (which may push only for its hosts; checked per report).
Pusher = Annotated[Principal, Depends(_pusher)]
#: An admin, or a reporter bound to the path's ``host_id``.
HostPusher = Annotated[Principal, Depends(_host_pusher)]
Fleet = Annotated[FleetService, Depends(_fleet)]
Views = Annotated[FleetViews, Depends(_views)]
Safety = Annotated[SafetyService, Depends(_safety)]
Storage = Annotated[StorageService, Depends(_storage)]
VmRuns = Annotated[VmRunService, Depends(_vmruns)]
Intake = Annotated[ReportIntake, Depends(_intake)]
Onboarding = Annotated[OnboardingService, Depends(_onboarding)]
AgentHolds = Annotated[AgentHoldService, Depends(_agent_holds)]
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
        403: "the token's role does not allow this",
        404: "unknown object",
        409: "conflicts with the object's state",
        413: "body too large",
        422: "invalid input; `field` names it",
        503: "a dependency is unavailable",
    }
    return {code: {"model": ErrorOut, "description": texts.get(code, "error")} for code in codes}
