"""One error shape for every answer that is not a success, and the mapping from our exceptions.

``{"error": code, "message": text, "field": name | null, ...}``: ``field`` names the input that
was refused (a body field, a query parameter, a path parameter); extra keys carry context such
as ``holder`` on a 409. Inputs are never echoed back, so a pasted secret does not travel further.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from api import schemas
from models.errors import (
    BadReport,
    BrokerUnavailable,
    Conflict,
    InvalidInput,
    NotFound,
    PermanentError,
    StoreUnavailable,
    TransientError,
)

log = logging.getLogger(__name__)

_LOCATIONS = frozenset({"body", "query", "path", "header", "cookie"})

#: What each input pattern means, for people (the regex itself is in the OpenAPI document).
PATTERN_TEXT = {
    schemas.ID_PATTERN: "must be 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit",
    schemas.NAME_PATTERN: "must be 1-128 characters of A-Z a-z 0-9 . _ : / + -",
    schemas.VERSION_PATTERN: "must be a version of dotted numbers such as 4.5 or 4.5.2",
    schemas.TEXT_PATTERN: (
        "must not contain control characters (C0, C1), line or paragraph separators, or "
        "bidirectional formatting characters"
    ),
    schemas.URL_PATTERN: "must be an http(s) URL of printable characters, without spaces",
    schemas.SD_ID_PATTERN: (
        "must be 1-128 characters of A-Z a-z 0-9 . _ : + -, starting with a letter, a digit or _"
    ),
}


class ApiError(Exception):
    """An HTTP answer with our error shape, raised by routes and dependencies."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers
        self.extra = extra or {}

    def response(self) -> JSONResponse:
        """Render the error."""
        return error_response(self.status, self.code, self.message, self.field, self.headers, self.extra)


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """Build a JSON error answer in the one shape; ``extra`` never replaces the three keys."""
    body: dict[str, Any] = dict(extra or {})
    body.update(error=code, message=_safe(message), field=None if field is None else _safe(field))
    return JSONResponse(body, status_code=status, headers=dict(headers) if headers else None)


def _safe(text: str) -> str:
    # A JSON key may hold a lone surrogate, which cannot be encoded in the answer.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def field_name(loc: Sequence[int | str]) -> str:
    """Turn a validation location into a field name, e.g. ``("body", "attempts", 2, "ok")``.

    That one is ``attempts[2].ok``: list positions go in brackets, as services name them
    (``attempts[2].host``).
    """
    parts = list(loc)
    if parts and parts[0] in _LOCATIONS:
        parts = parts[1:]
    # A JSON decode error is located by byte offset: the body as a whole is at fault.
    if not parts or isinstance(parts[0], int) or str(parts[0]).isdigit():
        return "body"
    name = str(parts[0])
    for part in parts[1:]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name


def _message(err: dict[str, Any]) -> str:
    if err.get("type") == "extra_forbidden":
        return "is not a known field"
    if err.get("type") == "missing":
        return "is required"
    if err.get("type") == "json_invalid":
        return "is not valid JSON"
    if err.get("type") == "string_pattern_mismatch":
        pattern = str((err.get("ctx") or {}).get("pattern", ""))
        if pattern in PATTERN_TEXT:
            return PATTERN_TEXT[pattern]
    msg = str(err.get("msg", "is not valid"))
    return msg.removeprefix("Value error, ")


def validation_error(exc: RequestValidationError) -> ApiError:
    """Map FastAPI's validation error to ours, naming the first field at fault."""
    errors = [
        {"field": _safe(field_name(e.get("loc", ()))), "message": _safe(_message(e)), "type": e.get("type")}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "message": "is not valid"}
    return ApiError(
        422,
        "invalid_input",
        f"{first['field']}: {first['message']}",
        first["field"],
        extra={"errors": errors},
    )


def _conflict(exc: Conflict) -> ApiError:
    """Name the kind of conflict from what the service put in its details."""
    details = dict(exc.details)
    holder = details.get("holder")
    if "holder" in details:  # another activation is queued or running for the host
        message = str(exc)
        if isinstance(holder, dict):
            message += f" ({holder.get('trigger')} by {holder.get('actor')}, {holder.get('state')})"
        return ApiError(409, "activation_in_flight", message, None, extra=details)
    if "problems" in details:  # a manual activation of a host whose report shows a problem
        return ApiError(409, "host_has_problems", str(exc), "force", extra=details)
    if details.get("status") == "up":
        return ApiError(409, "already_up", str(exc), None, extra=details)
    if details.get("has_hosts"):  # deleting a cluster that still has hosts
        return ApiError(409, "cluster_has_hosts", str(exc), None, extra=details)
    if "host_id" in details:  # registering an id that is taken
        return ApiError(409, "already_exists", str(exc), "id", extra=details)
    return ApiError(409, "conflict", str(exc), None, extra=details)


def from_domain(exc: Exception) -> ApiError:
    """Map one of our exceptions to an HTTP answer."""
    if isinstance(exc, NotFound):
        return ApiError(404, "not_found", str(exc), f"{exc.kind}_id")
    if isinstance(exc, Conflict):
        return _conflict(exc)
    if isinstance(exc, BadReport):
        return ApiError(422, "bad_report", f"{exc.field}: {exc.message}", exc.field)
    if isinstance(exc, InvalidInput):
        return ApiError(422, "invalid_input", f"{exc.field}: {exc.message}", exc.field)
    # Outage details (addresses, driver messages) go to the log, not to the caller.
    retry = {"Retry-After": "5"}
    if isinstance(exc, BrokerUnavailable):
        text = "the broker did not take the activation (recorded as not_enqueued); retry shortly"
        return ApiError(503, "broker_unavailable", text, headers=retry)
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, "unavailable", "PostgreSQL is unavailable; retry shortly", headers=retry)
    if isinstance(exc, TransientError):
        return ApiError(503, "unavailable", "a dependency is unavailable; retry shortly", headers=retry)
    if isinstance(exc, PermanentError):
        return ApiError(400, "bad_request", str(exc))
    return ApiError(500, "internal_error", "internal error; see the API's log")


def _http_handler(
    reauthenticate: Callable[[Request], object],
) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    """The handler of Starlette's HTTP errors: an undecodable body, a body over its limit, others."""

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8, too deep)
            try:
                reauthenticate(request)
            except ApiError as auth_error:
                return auth_error.response()
            return error_response(422, "invalid_input", "body: is not valid JSON", "body")
        if exc.status_code == 413:  # max_body_size: the body went over the route's limit as it came
            # The client may still be sending: the answer closes rather than reads the rest.
            limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
            text = f"body: must be at most {limit} bytes" if limit is not None else "body: too large"
            return error_response(413, "too_large", text, "body", {"connection": "close"})
        try:
            phrase = HTTPStatus(exc.status_code).phrase
        except ValueError:
            phrase = "error"
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        return error_response(exc.status_code, code, str(exc.detail), None, exc.headers)

    return on_http


def install(app: FastAPI, reauthenticate: Callable[[Request], object]) -> None:
    """Register the handlers; ``reauthenticate(request)`` raises ApiError for a bad caller.

    FastAPI decodes a JSON body before it runs dependencies, so a malformed body from an
    unauthenticated caller would get a 422; ``reauthenticate`` keeps the answer 401/403.
    """

    async def on_api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return exc.response()

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        try:
            reauthenticate(request)
        except ApiError as auth_error:
            return auth_error.response()
        return validation_error(exc).response()

    on_http = _http_handler(reauthenticate)

    async def on_domain(request: Request, exc: Exception) -> JSONResponse:
        mapped = from_domain(exc)
        if mapped.status == 503:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        # A 500 is logged with its traceback by the server, which sees the exception re-raised.
        return mapped.response()

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(PermanentError, on_domain)
    app.add_exception_handler(TransientError, on_domain)
    app.add_exception_handler(Exception, on_domain)
