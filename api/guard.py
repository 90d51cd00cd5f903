"""The API's front door, a pure ASGI middleware: who may call what, before any body is read.

For every request it refuses, without reading a byte of the body: a token put in the query
string (400; tokens travel only in the Authorization header), and a call under ``/api/v1`` or
``/metrics`` without a valid token (401) or beyond the token's role (403). A refusal sent while
the client still has a body to send closes the connection, so nothing more is buffered.

Body sizes are FastAPI's ``max_body_size`` (app-wide, larger on the bulk routes): Starlette
counts the bytes as they arrive, chunked uploads too, and stops at the limit with a 413.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

from fastapi.responses import JSONResponse
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from api.auth import Principal, Role, TokenTable

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Query parameter names that would carry a credential into URLs, proxies' and access logs.
TOKEN_PARAMS = frozenset({"token", "access_token", "api_key", "apikey", "auth", "authorization", "bearer"})
_REPORT_PATH = re.compile(r"^/api/v1/hosts/([^/]+)/report$")
BULK_REPORTS_PATH = API_PREFIX + "/reports"
#: Where the Guard leaves the authenticated caller in the ASGI scope (``api.push`` reads it).
PRINCIPAL_SCOPE_KEY = "autorecovery.principal"


def is_protected(path: str) -> bool:
    """True for the routes that need a token (``/api/v1/…`` and ``/metrics``)."""
    return path == "/metrics" or path == API_PREFIX or path.startswith(API_PREFIX + "/")


def bearer_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Return the bearer token of raw ASGI headers, or None."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            return None
    return None


def unauthorized(message: str, invalid: bool) -> errors.ApiError:
    """A 401 in the one error shape, with the challenge RFC 6750 asks for."""
    challenge = 'Bearer realm="autorecovery"' + (', error="invalid_token"' if invalid else "")
    return errors.ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def forbidden(principal: Principal, method: str, path: str) -> errors.ApiError | None:
    """Return a 403 when ``principal``'s role does not allow ``method path``, else None."""
    if principal.role is Role.ADMIN:
        return None
    if principal.role is Role.REPORTER:
        if method == "POST" and path == BULK_REPORTS_PATH:
            return None
        match = _REPORT_PATH.match(path)
        if method == "POST" and match and principal.can_report(match.group(1)):
            return None
        text = f"token {principal.name!r} is a reporter; it may only push reports for its own hosts"
        return errors.ApiError(403, "forbidden", text)
    if method in READ_METHODS:
        return None
    return errors.ApiError(403, "forbidden", f"token {principal.name!r} is a viewer; this needs admin")


class Guard:
    """Refuse before reading the body: tokens in the query string, then authentication and role."""

    def __init__(self, app: ASGIApp, tokens: TokenTable) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await _send_error(refusal, _has_body(scope), scope, receive, send)
            return
        replaced = False

        async def shaped(message: Message) -> None:
            # Starlette answers a declared Content-Length over max_body_size with its own
            # plain-text 413; give it the one error shape instead.
            nonlocal replaced
            if message["type"] == "http.response.start" and message["status"] == 413:
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if not content_type.startswith(b"application/json"):
                    replaced = True
                    await _send_error(too_large(scope), True, scope, receive, send)
                    return
            if not replaced:
                await send(message)

        try:
            await self.app(scope, receive, shaped)
        except ClientDisconnect:  # the client left, or its body was too slow (the server closed it)
            log.info("%s %s: the client went away before its body was read", scope["method"], scope["path"])

    def _refusal(self, scope: Scope) -> errors.ApiError | None:
        query = scope.get("query_string", b"").decode("latin-1")
        for name, _ in parse_qsl(query, keep_blank_values=True):
            if name.lower() in TOKEN_PARAMS:
                text = f"{name}: tokens go in the Authorization header only, never in the URL"
                return errors.ApiError(400, "token_in_query", text, name)
        path: str = scope["path"]
        if not is_protected(path):
            return None
        token = bearer_from_headers(scope["headers"])
        if token is None:
            return unauthorized("a bearer token is required", invalid=False)
        principal = self.tokens.authenticate(token)
        if principal is None:
            return unauthorized("the bearer token is not valid", invalid=True)
        refused = forbidden(principal, scope["method"], path)
        if refused is None:
            scope[PRINCIPAL_SCOPE_KEY] = principal
        return refused


def too_large(scope: Scope) -> errors.ApiError:
    """The 413 of a body over the route's ``max_body_size`` (closing the connection)."""
    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    text = f"body: must be at most {limit} bytes" if limit is not None else "body: too large"
    return errors.ApiError(413, "too_large", text, "body", headers={"connection": "close"})


def _has_body(scope: Scope) -> bool:
    return any(
        name == b"transfer-encoding" or (name == b"content-length" and value != b"0")
        for name, value in scope["headers"]
    )


async def _send_error(
    error: errors.ApiError, close: bool, scope: Scope, receive: Receive, send: Send
) -> None:
    response: JSONResponse = error.response()
    if close:  # the client may still be sending a body we will not read: end the connection
        response.headers["connection"] = "close"
    await response(scope, receive, send)
