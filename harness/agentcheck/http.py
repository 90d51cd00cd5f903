"""The conformance checker's HTTP calls to one agent: answers as data, never an exception."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

#: The product reads at most this much of an agent's answer (AUTORECOVERY_AGENT_MAX_REPORT_BYTES).
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer: status (0 when none came), decoded JSON body (None if not JSON), size, error."""

    status: int
    body: Any = None
    size: int = 0
    error: str | None = None
    location: str | None = None

    @property
    def obj(self) -> dict[str, Any]:
        """The body when it is a JSON object, else an empty dict."""
        return self.body if isinstance(self.body, dict) else {}

    def describe(self) -> str:
        """Say in a few words what came back, for a FAIL line."""
        if self.error is not None:
            return self.error
        text = json.dumps(self.body)[:160] if self.body is not None else "(not JSON)"
        return f"HTTP {self.status} {text}"


class AgentHttp:
    """Calls one agent's routes with (or, to test refusal, without) its bearer token.

    Redirects are never followed, as the product never follows them.
    """

    def __init__(self, base_url: str, token: str | None, timeout_s: float, verify: str | bool) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._http = httpx.Client(timeout=timeout_s, verify=verify, follow_redirects=False)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        send_token: bool = True,
        prefer_async: bool = False,
    ) -> Reply:
        """Send one request; ``token`` overrides the configured one, ``send_token=False`` omits it."""
        headers: dict[str, str] = {}
        sent = token if token is not None else self.token
        if send_token and sent is not None:
            headers["Authorization"] = f"Bearer {sent}"
        if prefer_async:
            headers["Prefer"] = "respond-async"
        try:
            with self._http.stream(method, self.base_url + path, json=body, headers=headers) as resp:
                raw = _read_capped(resp)
        except httpx.HTTPError as exc:
            return Reply(0, error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        if raw is None:
            return Reply(resp.status_code, size=MAX_BODY_BYTES + 1)
        try:
            decoded = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            decoded = None
        return Reply(resp.status_code, decoded, len(raw), location=resp.headers.get("location"))


def _read_capped(resp: httpx.Response) -> bytes | None:
    """The body, or None when it is longer than the product would read."""
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
