"""The API client of the operator commands: where to call, with which token, and what failed.

Every failure becomes an ``ApiFailure`` that carries the exit code (see ``Exit``), the API's
message and a hint of what to do; the token travels only in the Authorization header.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import re
import sys
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import IntEnum
from typing import Any
from urllib.parse import urlsplit

import httpx

from autorecovery import __version__
from models.errors import AutorecoveryError, InvalidInput

API_PREFIX = "/api/v1"
REQUEST_TIMEOUT_S = 30.0
DEV_TOKEN_FILE = "admin-token"  # noqa: S105 - a file name: ``autorecovery up`` writes it
_TOKEN_CHARS = re.compile(r"[!-~]+")


class Exit(IntEnum):
    """What the process's exit code means (see ``cli.ops``)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    TIMEOUT = 3
    NOT_FOUND = 4
    CONFLICT = 5
    AUTH = 6
    UNREACHABLE = 7


class ApiFailure(AutorecoveryError):
    """An operator command that did not succeed: the message, what to do, the exit code."""

    def __init__(
        self, exit_code: Exit, message: str, hint: str | None = None, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.message = message
        self.hint = hint
        #: The API's error body, when it answered one (``errors`` lists every field at fault).
        self.body = body or {}


def exit_code_for(status: int) -> Exit:
    """Map an HTTP error status to the exit code."""
    if status in (401, 403):
        return Exit.AUTH
    if status == 404:
        return Exit.NOT_FOUND
    if status == 409:
        return Exit.CONFLICT
    if status in (408, 504):
        return Exit.TIMEOUT
    if status in (502, 503):
        return Exit.UNREACHABLE
    return Exit.USAGE if 400 <= status < 500 else Exit.FAILED


#: What to do after an error answer, by HTTP status.
_STATUS_HINTS = {
    401: "give a token of the API's AUTORECOVERY_API_TOKENS with --token or AUTORECOVERY_TOKEN",
    403: "this needs an admin token",
    404: "check the id with `autorecovery hosts list`",
}
#: What to do after an error answer, by the API's error code, else by the field a 404 names.
_CODE_HINTS = {
    "cluster_id": "check the id with `autorecovery clusters list`",
    "storage_domain_id": "check the id with `autorecovery storage-domains list`",
    "not_paused": "nothing to resume; `autorecovery safety` lists the pauses in force",
    "already_up": "nothing to do",
    "host_has_problems": "fix what its report shows, or add --force to init it anyway",
}


def _hint(status: int, body: dict[str, Any], base_url: str) -> str | None:
    """Say what to do next, from the answer's status, error code and field."""
    code, field = body.get("error"), body.get("field")
    if code == "activation_in_flight":
        holder = body.get("holder") or {}
        if "sd_id" in holder:
            return f"follow it with `autorecovery storage-domains show {holder['sd_id']}`"
        if "host_id" in holder:
            return f"follow it with `autorecovery hosts show {holder['host_id']}`"
        return "wait for the activation in flight to end, then try again"
    for key in (code, field if status == 404 else None):
        if key in _CODE_HINTS:
            return _CODE_HINTS[str(key)]
    if status in (400, 413, 422) and field:
        return f"fix {field} and try again"
    if status == 503:
        return f"retry later; {base_url}/readyz says which dependency is down"
    return _STATUS_HINTS.get(status, "see the API's log" if status >= 500 else None)


def not_the_api(response: httpx.Response, base_url: str) -> ApiFailure:
    """Say that the URL answered something other than the API's JSON (its body is not shown).

    A gateway's 502/503/504 keeps its exit code (the API behind it is down or slow); any other
    answer means the URL is not the API: exit 2, a setting to fix.
    """
    status = response.status_code
    kind = response.headers.get("content-type", "").split(";")[0].strip() or "no content type"
    said = f"{base_url} answered HTTP {status} with {kind}, not the autorecovery API's JSON"
    if status in (502, 503, 504):
        return ApiFailure(
            exit_code_for(status), said, "a proxy in front of the API answered: is the API up behind it?"
        )
    return ApiFailure(
        Exit.USAGE,
        said,
        f"is {base_url} the autorecovery API? set --api-url or AUTORECOVERY_API_URL "
        "(e.g. http://127.0.0.1:8800, without /api/v1)",
    )


def failure_from(response: httpx.Response, base_url: str) -> ApiFailure:
    """Turn an error answer into the API's message and a hint of what to do."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return not_the_api(response, base_url)
    status = response.status_code
    return ApiFailure(
        exit_code_for(status), str(body.get("message") or f"HTTP {status}"), _hint(status, body, base_url),
        body,
    )


class ApiClient:
    """JSON calls to ``<base_url>/api/v1``; every failure becomes an ApiFailure."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        headers = {"User-Agent": f"autorecovery-cli/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._date: str | None = None
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX, headers=headers, timeout=timeout_s, transport=transport
        )

    def server_now(self) -> datetime | None:
        """The API's clock as of its last answer (its ``Date`` header), else this machine's."""
        if self._date:
            with contextlib.suppress(TypeError, ValueError):
                return parsedate_to_datetime(self._date)
        return datetime.now(UTC)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """Send one request; return its JSON (None for an empty answer).

        Raises:
            ApiFailure: the API refused, failed, or could not be reached in time.
        """
        return self.send(method, path, params=params, body=body)[1]

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[int, Any]:
        """Send one request; return the answer's status and its JSON (None for an empty answer).

        Raises:
            ApiFailure: the API refused, failed, or could not be reached in time.
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        where = f"{method} {API_PREFIX}{path}"
        try:
            response = self._http.request(method, path, params=query, json=body)
        except httpx.ConnectTimeout as exc:
            raise self._unreachable(exc) from exc
        except httpx.TimeoutException as exc:
            raise ApiFailure(
                Exit.TIMEOUT,
                f"{where}: no answer within {self.timeout_s:.0f}s",
                "retry; the API or its database may be overloaded",
            ) from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        self._date = response.headers.get("date")
        if not response.is_success:
            raise failure_from(response, self.base_url)
        if not response.content:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError as exc:
            raise not_the_api(response, self.base_url) from exc

    def _unreachable(self, exc: Exception) -> ApiFailure:
        return ApiFailure(
            Exit.UNREACHABLE,
            f"cannot reach the API at {self.base_url} ({type(exc).__name__}: {exc})",
            "is the API running there? set --api-url or AUTORECOVERY_API_URL",
        )


# -- Where to call, with which token ---------------------------------------------------------


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(args: argparse.Namespace) -> tuple[str, str | None]:
    """Return the API URL and token from the options, else the settings (environment).

    Raises:
        ApiFailure: exit 2 when the URL is not http(s) or the token cannot go in a header;
            the message names where the value came from, never the token.
    """
    url, token, source = args.api_url, args.token, "--token"
    if url is None or token is None:
        from autorecovery.settings import load_settings

        try:
            settings = load_settings()
        except InvalidInput as exc:
            raise ApiFailure(Exit.USAGE, str(exc), "fix the variable, or pass the option") from exc
        url = url or settings.api_url
        if token is None:
            source = "AUTORECOVERY_TOKEN"
            token = settings.token.get_secret_value() if settings.token else None
            dev_file = settings.data_dir / DEV_TOKEN_FILE
            if not token and _is_loopback(url):
                source = str(dev_file)
                with contextlib.suppress(OSError):  # no file, or not ours: go without a token
                    token = dev_file.read_text(encoding="utf-8").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiFailure(
            Exit.USAGE,
            f"the API URL {url!r} is not an http(s) URL",
            "set --api-url or AUTORECOVERY_API_URL, e.g. http://127.0.0.1:8800",
        )
    if token and not _TOKEN_CHARS.fullmatch(token):
        raise ApiFailure(
            Exit.USAGE,
            f"the token from {source} has spaces or non-ASCII characters",
            "copy it again without them",
        )
    if token and parts.scheme == "http" and not _is_loopback(url):
        _allow_plain_http(args, parts.hostname or "")
    return url, token or None


def _allow_plain_http(args: argparse.Namespace, host: str) -> None:
    """Warn before a token goes over plain http beyond loopback; refuse unless told it may.

    Raises:
        ApiFailure: exit 2 without ``--insecure`` or AUTORECOVERY_CLI_INSECURE.
    """
    allowed = bool(getattr(args, "insecure", False))
    if not allowed:
        from autorecovery.settings import load_settings

        with contextlib.suppress(InvalidInput):  # a bad variable elsewhere: not allowed
            allowed = load_settings().cli_insecure
    if not allowed:
        raise ApiFailure(
            Exit.USAGE,
            f"refusing to send the token over plain http to {host}: anyone on the path can read it",
            "use an https:// API URL; or, on a network you trust, pass --insecure "
            "(or set AUTORECOVERY_CLI_INSECURE=1)",
        )
    sys.stderr.write(f"autorecovery: warning: sending the token over plain http to {host} (--insecure)\n")
