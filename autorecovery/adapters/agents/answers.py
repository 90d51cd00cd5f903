"""Read the small JSON answers of v2 calls (init, status, fence), depth-checked like reports."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import aiohttp
import httpx

from autorecovery.adapters.agents.addresses import RefusedAddress
from models.errors import AgentUnavailable, BadReport
from models.report_wire import decode_json


def json_object(raw: bytes, url: str) -> dict[str, Any]:
    """The answer's JSON object, or AgentUnavailable saying what it is instead."""
    try:
        data = decode_json(raw)
    except BadReport as exc:
        raise AgentUnavailable(f"{url}: answer {exc}") from None
    if not isinstance(data, dict):
        raise AgentUnavailable(f"{url}: answer is not a JSON object")
    return data


#: What an OS error on connecting means, in words (``ssl:default`` and errnos are for the log).
_CONNECT_WHY: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (TimeoutError, "connection timed out"),
    (socket.gaierror, "the host name does not resolve"),
    (ssl.SSLCertVerificationError, "its TLS certificate is not trusted"),
    (ssl.SSLError, "the TLS handshake failed"),
)


def _root(exc: BaseException) -> BaseException:
    """The first OS-level error under a library's wrapper, or the exception itself."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and not isinstance(seen, aiohttp.ClientError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def _why(exc: BaseException) -> str:
    if isinstance(exc, RefusedAddress):  # the URL policy's own words
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"its TLS certificate is not trusted (certificate verify failed: {exc.verify_message})"
    for kind, words in _CONNECT_WHY:
        if isinstance(exc, kind):
            return words
    text = (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)).strip()
    return text[:1].lower() + text[1:] if text else type(exc).__name__


def failure_text(exc: BaseException) -> str:
    """Say in one sentence why a call to an agent failed, without the HTTP library's internals.

    ``ClientConnectorError: Cannot connect to host 10.0.0.7:8900 ssl:default [Connect call
    failed ...]`` becomes ``cannot connect to 10.0.0.7:8900: connection refused``.
    """
    if isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, RefusedAddress):
            return _why(exc.os_error)
        return f"cannot connect to {exc.host}:{exc.port}: {_why(exc.os_error)}"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return "cannot connect: connection timed out"
    if isinstance(exc, httpx.ConnectError):
        root = _root(exc)
        return _why(root) if isinstance(root, RefusedAddress) else f"cannot connect: {_why(root)}"
    if isinstance(exc, RefusedAddress):
        return _why(exc)
    if isinstance(exc, httpx.TimeoutException | TimeoutError | aiohttp.ServerTimeoutError):
        text = str(exc)
        return text if text.startswith("no complete answer") else "no complete answer in time"
    return _answer_failure(exc)


def _answer_failure(exc: BaseException) -> str:
    """Say why an answer that had begun did not arrive whole, or name the failure as a last resort."""
    if isinstance(exc, aiohttp.ServerDisconnectedError | httpx.RemoteProtocolError):
        return "the agent closed the connection without a complete answer"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if isinstance(exc, BadReport):
        return f"answer {exc}"
    if isinstance(exc, OSError):
        return _why(exc)
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def error_code(data: dict[str, Any]) -> str | None:
    """The ``error`` a 409 names, when it names one."""
    value = data.get("error")
    return value if isinstance(value, str) else None


def busy_holder(data: dict[str, Any]) -> tuple[str | None, int | None]:
    """The activation id and fence a 409 busy names, when it names them."""
    act = data.get("activation_id")
    return (act if isinstance(act, str) else None), _int(data.get("fence"))


def highest(data: object) -> int | None:
    """The highest fence an answer says the agent accepted, when it says one."""
    return _int(data.get("highest")) if isinstance(data, dict) else None
