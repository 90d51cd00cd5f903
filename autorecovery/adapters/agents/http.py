"""Agent protocol v2 over HTTP (aiohttp): bounded concurrent pulls and single calls, one client.

One ``AgentSession`` per process holds the event loop, the connections and the resolver: a tick
reuses the connections of the last one, and a name is resolved once per TTL; every address a
connection uses went through the URL policy (``PolicyResolver``).

Whatever one agent answers (huge, compressed past reason, deep, slow, redirecting, dated ahead,
not JSON) becomes that host's observation: nothing an agent sends escapes ``pull_reports``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, overload

import aiohttp
from aiohttp.abc import AbstractResolver
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter
from yarl import URL

from autorecovery.adapters.agents import InitResult, InitStatus, Target
from autorecovery.adapters.agents.addresses import (
    PolicyResolver,
    RefusedAddress,
    check_target,
    may_send_credential,
)
from autorecovery.adapters.agents.answers import (
    busy_holder,
    error_code,
    failure_text,
    highest,
    json_object,
)
from autorecovery.adapters.agents.body import ACCEPT_ENCODING, DEFAULT_MAX_BYTES, BoundedBody
from autorecovery.adapters.agents.session import AgentSession
from models.agent_url import AgentUrlPolicy, IPNetwork, redact_url
from models.credentials import AgentCredentials
from models.domain import Report
from models.errors import AgentBusy, AgentUnavailable, BadReport, InitOutcomeUnknown, StaleFence
from models.report import DEFAULT_MAX_SKEW_S, bad_report, unreachable_report
from models.report_wire import decode_report

log = logging.getLogger(__name__)

_CHUNK = 64 * 1024
#: The statuses whose body a report pull reads.
_READ_REPORT = frozenset({200})
#: Hosts whose report call is kept worked out (a fleet pulls each of its hosts every tick).
_MAX_PULLS = 200_000


@dataclass(frozen=True, slots=True)
class _Call:
    """One agent route's call, worked out: its URL as named and as parsed, the headers to try."""

    url: str
    parsed: URL
    #: Headers in turn: the previous key's token only after a 401 to the current one's.
    attempts: tuple[dict[str, str] | None, ...]


class HttpAgentClient:
    """The real agent client; each host's credential is sent on its calls only, and never shown.

    A credential goes only over https://, to a loopback address, or to an address in
    ``plain_http_networks``; any other call is refused before it is made. A key rotation is a
    second attempt of the same call with the previous key's token, after a 401 to the first.

    ``dns`` replaces the system's name resolution (tests and benchmarks name agents without
    touching /etc/hosts); the URL policy checks its answers like any other.
    """

    def __init__(
        self,
        *,
        report_timeout_s: float,
        init_timeout_s: float,
        concurrency: int,
        retries: int,
        token: str | None = None,
        ca_file: Path | None = None,
        max_report_bytes: int = DEFAULT_MAX_BYTES,
        max_skew_s: float = DEFAULT_MAX_SKEW_S,
        url_policy: AgentUrlPolicy = AgentUrlPolicy(),  # noqa: B008 - frozen
        credentials: AgentCredentials | None = None,
        plain_http_networks: tuple[IPNetwork, ...] = (),
        dns_ttl_s: float = 60.0,
        keepalive_s: float = 30.0,
        dns: AbstractResolver | None = None,
    ) -> None:
        self.report_timeout_s = report_timeout_s
        self.init_timeout_s = init_timeout_s
        self.concurrency = concurrency
        self.retries = retries
        self.max_report_bytes = max_report_bytes
        self.max_skew_s = max_skew_s
        self.url_policy = url_policy
        self._headers = {"Accept-Encoding": ACCEPT_ENCODING}
        # No credential here: each host's goes in its own calls' headers (``_auth``).
        self.credentials = credentials or AgentCredentials(fleet_token=token or None)
        self.plain_http_networks = plain_http_networks
        self._pulls: dict[tuple[str, str], _Call] = {}
        # One per timeout: the calls share them (ClientTimeout is immutable).
        self._timeouts = {
            t: aiohttp.ClientTimeout(total=t, connect=min(t, report_timeout_s))
            for t in (report_timeout_s, init_timeout_s)
        }
        self.resolver = PolicyResolver(url_policy, ttl_s=dns_ttl_s, inner=dns)
        self.session = AgentSession(
            resolver=self.resolver,
            ssl_context=ssl.create_default_context(cafile=str(ca_file) if ca_file else None),
            concurrency=concurrency,
            keepalive_s=keepalive_s,
            headers=self._headers,
        )

    def __repr__(self) -> str:
        return f"HttpAgentClient(concurrency={self.concurrency}, {self.credentials!r})"

    def _auth(self, target: Target, url: str) -> list[dict[str, str]]:
        """Headers to try in turn (the previous key's token only after a 401).

        Raises:
            RefusedAddress: a credential would go over plain http to a non-loopback address
                outside ``plain_http_networks``.
        """
        tokens = self.credentials.tokens(target.host_id)
        if not tokens:
            return [{}]
        if not may_send_credential(url, self.plain_http_networks):
            raise RefusedAddress(
                f"{url}: the agent credential goes only over https://, to a loopback address, or to "
                "AUTORECOVERY_AGENT_PLAIN_HTTP_NETWORKS"
            )
        return [{"Authorization": f"Bearer {token}"} for token in tokens]

    def _plan(self, target: Target, url: str, extra: dict[str, str] | None = None) -> _Call:
        """Work a call out: the URL policy's verdict on the agent's URL, and the headers to try.

        Raises:
            RefusedAddress: the URL policy forbids the agent's URL, or a credential would go
                where it may not (``_auth``).
        """
        check_target(self.url_policy, target.agent_url)  # as registered: a user:pass@ is refused
        attempts = tuple({**h, **(extra or {})} or None for h in self._auth(target, url))
        return _Call(url, URL(url), attempts)

    def _report_plan(self, target: Target) -> _Call:
        """A host's report call, worked out once per host and URL: every tick pulls it."""
        key = (target.host_id, target.agent_url)
        found = self._pulls.get(key)
        if found is None:
            found = self._plan(target, _url(target, "/report"))
            if len(self._pulls) >= _MAX_PULLS:
                self._pulls.clear()
            self._pulls[key] = found
        return found

    def close(self) -> None:
        """Close the kept-alive connections and stop the client's event loop."""
        self.session.close()

    # --- reports ----------------------------------------------------------------------------------

    def pull_reports(self, targets: Sequence[Target], now: datetime) -> list[Report]:
        """Pull every target's report concurrently; one dead agent costs one timeout, not more."""
        if not targets:
            return []
        return self.session.run(self._pull_all(targets, now))

    async def _pull_all(self, targets: Sequence[Target], now: datetime) -> list[Report]:
        # aiohttp, not httpx: httpcore's pool costs O(connections) per request.
        session = self.session.pull
        return list(await asyncio.gather(*(self._pull_one(session, t, now) for t in targets)))

    async def _pull_one(self, session: aiohttp.ClientSession, target: Target, now: datetime) -> Report:
        try:
            call = self._report_plan(target)
            status, location, raw = await self._exchange(
                session, call, "GET", None, self.report_timeout_s, _READ_REPORT
            )
        except BadReport as exc:
            return self._bad(target, now, exc)
        except (aiohttp.ClientError, OSError) as exc:
            return unreachable_report(target.host_id, now, failure_text(exc))
        except Exception as exc:  # one host's boundary: nothing it sends may fail the batch
            log.exception("host %s: unexpected failure pulling its report", target.host_id)
            return unreachable_report(target.host_id, now, f"unexpected: {failure_text(exc)}")
        if status != 200:
            return _not_ok(target, now, status, location)
        return self._decode(target, now, raw)

    def get_report(self, target: Target, now: datetime) -> Report:
        """Pull one report (the activation's fresh re-check), with the same limits as a pull."""
        return self.session.run(self._get_report(target, now))

    async def _get_report(self, target: Target, now: datetime) -> Report:
        return await self._pull_one(self.session.call, target, now)

    def _decode(self, target: Target, now: datetime, raw: bytes) -> Report:
        try:
            return decode_report(raw, target.host_id, now=now, max_skew_s=self.max_skew_s)
        except BadReport as exc:
            return self._bad(target, now, exc)

    @staticmethod
    def _bad(target: Target, now: datetime, exc: BadReport) -> Report:
        log.warning("host %s: bad report: %s", target.host_id, exc)
        return bad_report(target.host_id, now, exc)

    async def _exchange(
        self,
        session: aiohttp.ClientSession,
        call: _Call,
        method: str,
        body: dict[str, Any] | None,
        timeout_s: float,
        read: AbstractSet[int],
    ) -> tuple[int, str | None, bytes]:
        """One bounded call: the status, the Location header, and the body when status in ``read``.

        ``timeout_s`` bounds the whole call, a dripping body included; connecting is bounded by
        the report timeout. A key rotation is a second attempt with the previous key's token,
        after a 401 to the first.

        Raises:
            RefusedAddress: the agent's name resolved to an address the URL policy refuses
                (inside aiohttp, as a ``ClientConnectorError``).
            BadReport: the body is over the limits.
            aiohttp.ClientError, TimeoutError: as aiohttp raises.
        """
        for headers in call.attempts[:-1]:  # a key rotation: try the current key's token first
            status, location, raw = await self._exchange_once(
                session, method, call.parsed, body, timeout_s, read, headers
            )
            if status != 401:
                return status, location, raw
        return await self._exchange_once(
            session, method, call.parsed, body, timeout_s, read, call.attempts[-1]
        )

    async def _exchange_once(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        body: dict[str, Any] | None,
        timeout_s: float,
        read: AbstractSet[int],
        headers: dict[str, str] | None,
    ) -> tuple[int, str | None, bytes]:
        timeout = self._timeouts.get(timeout_s) or aiohttp.ClientTimeout(
            total=timeout_s, connect=min(timeout_s, self.report_timeout_s)
        )
        try:
            async with session.request(
                method, url, json=body, allow_redirects=False, timeout=timeout, headers=headers
            ) as resp:
                if resp.status not in read:
                    return resp.status, resp.headers.get("Location"), b""
                encoding = resp.headers.get("Content-Encoding")
                length = resp.content_length
                if encoding is None and length is not None and length <= self.max_report_bytes:
                    # Plain and no longer than declared (the parser stops at Content-Length).
                    return resp.status, None, await resp.read()
                reader = BoundedBody(encoding, self.max_report_bytes, length)
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    reader.feed(chunk)
                return resp.status, None, reader.content()
        except aiohttp.ServerTimeoutError:
            raise  # connecting timed out: the caller may try again
        except TimeoutError as exc:  # the whole call, a dripping body included
            raise TimeoutError(f"no complete answer within {timeout_s:g}s") from exc

    def _call_once(
        self,
        target: Target,
        method: str,
        url: str,
        body: dict[str, Any] | None,
        timeout_s: float,
        read: AbstractSet[int],
        extra: dict[str, str] | None = None,
    ) -> tuple[int, str | None, bytes]:
        async def call() -> tuple[int, str | None, bytes]:  # the session lives on the loop thread
            return await self._exchange(
                self.session.call, self._plan(target, url, extra), method, body, timeout_s, read
            )

        return self.session.run(call())

    # --- v2 calls ---------------------------------------------------------------------------------

    def init(self, target: Target, fence: int, activation_id: str) -> InitResult:
        """POST /init with the fencing token, retrying connection failures with backoff."""
        return self._fenced_post(
            target, _url(target, "/init"), {"fence": fence, "activation_id": activation_id}
        )

    def start_init(self, target: Target, fence: int, activation_id: str) -> InitResult | None:
        """POST /init with ``Prefer: respond-async``: None when the agent runs it (202)."""
        body = {"fence": fence, "activation_id": activation_id}
        return self._fenced_post(target, _url(target, "/init"), body, respond_async=True)

    def connect_storage_domain(
        self, target: Target, sd_id: str, fence: int, activation_id: str
    ) -> InitResult:
        """POST /storage-domains/{id}/connect with the domain's fencing token."""
        return self._fenced_post(
            target,
            _url(target, f"/storage-domains/{sd_id}/connect"),
            {"fence": fence, "activation_id": activation_id},
        )

    def _call(
        self, target: Target, method: str, url: str, body: dict[str, Any] | None, read: set[int]
    ) -> tuple[int, object]:
        """A short v2 call; AgentUnavailable when it fails or its answer is over the limits."""
        try:
            status, _, raw = self._call_once(target, method, url, body, self.report_timeout_s, read)
        except (aiohttp.ClientError, OSError, BadReport) as exc:
            raise AgentUnavailable(f"{url}: {failure_text(exc)}") from exc
        return status, json_object(raw, url) if status in read else None

    def init_status(self, target: Target, activation_id: str) -> InitStatus | None:
        """GET /init/{activation_id}: how a v2 agent's init went; None when it has no record."""
        return self._status(target, _url(target, f"/init/{activation_id}"), activation_id)

    def start_connect(self, target: Target, sd_id: str, fence: int, activation_id: str) -> InitResult | None:
        """POST /storage-domains/{id}/connect with ``Prefer: respond-async``: None on 202."""
        return self._fenced_post(
            target,
            _url(target, f"/storage-domains/{sd_id}/connect"),
            {"fence": fence, "activation_id": activation_id},
            respond_async=True,
        )

    def connect_status(self, target: Target, sd_id: str, activation_id: str) -> InitStatus | None:
        """GET /storage-domains/{sd_id}/connect/{activation_id}: how a connect went."""
        return self._status(
            target, _url(target, f"/storage-domains/{sd_id}/connect/{activation_id}"), activation_id
        )

    def _status(self, target: Target, url: str, activation_id: str) -> InitStatus | None:
        status, data = self._call(target, "GET", url, None, {200})
        if status == 404:
            return None
        if status != 200 or not isinstance(data, dict):
            raise AgentUnavailable(f"{url}: HTTP {status}")
        fence = data.get("fence")
        if data.get("status") not in ("running", "done") or not isinstance(fence, int):
            raise AgentUnavailable(f"{url}: answer has no status or fence")
        return InitStatus(
            activation_id=activation_id,
            fence=fence,
            running=data["status"] == "running",
            ok=data.get("ok") if isinstance(data.get("ok"), bool) else None,
            reason=data.get("reason"),
            detail=data.get("detail"),
        )

    def raise_fence(self, target: Target, fence: int) -> int | None:
        """POST /fence: raise the highest fence the agent accepts; None from a v1 agent."""
        url = _url(target, "/fence")
        status, data = self._call(target, "POST", url, {"fence": fence}, {200})
        if status in (404, 405):
            return None
        value = highest(data) if status == 200 else None
        if value is None:
            raise AgentUnavailable(f"{url}: answer has no integer 'highest' (HTTP {status})")
        return value

    def _send_fenced(
        self, target: Target, url: str, body: dict[str, Any], extra: dict[str, str] | None
    ) -> tuple[int, bytes]:
        """POST a fenced call, sending it again only while it cannot have reached the agent."""

        @retry(
            # Only failures to connect: a request that may have reached the agent is not sent
            # twice (a second init with the same fence would run beside the first).
            retry=retry_if_exception_type(_NotConnected),
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            reraise=True,
        )
        def post() -> tuple[int, str | None, bytes]:
            try:
                return self._call_once(
                    target, "POST", url, body, self.init_timeout_s, {200, 202, 409, 503}, extra
                )
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                if _is_refused(exc):
                    raise
                raise _NotConnected(exc) from exc

        try:
            status, _, raw = post()
        except _NotConnected as exc:
            raise AgentUnavailable(f"{url}: {failure_text(exc.cause)}") from exc.cause
        except (RefusedAddress, aiohttp.ClientConnectorError) as exc:  # the URL policy: never sent
            raise AgentUnavailable(f"{url}: {failure_text(exc)}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            # The request may have reached the agent: its outcome is unknown, not a failure.
            raise InitOutcomeUnknown(f"{url}: {failure_text(exc)}") from exc
        except BadReport as exc:
            raise AgentUnavailable(f"{url}: answer {exc}") from exc
        return status, raw

    @overload
    def _fenced_post(self, target: Target, url: str, body: dict[str, Any]) -> InitResult: ...
    @overload
    def _fenced_post(
        self, target: Target, url: str, body: dict[str, Any], *, respond_async: bool
    ) -> InitResult | None: ...

    def _fenced_post(
        self, target: Target, url: str, body: dict[str, Any], *, respond_async: bool = False
    ) -> InitResult | None:
        extra = {"Prefer": "respond-async"} if respond_async else None
        status, raw = self._send_fenced(target, url, body, extra)
        if respond_async and status == 202:
            return None  # the agent runs the init; its outcome is asked for later
        return _init_answer(url, body, status, raw)


def _init_answer(url: str, body: dict[str, Any], status: int, raw: bytes) -> InitResult:
    """Read an agent's answer to an init or connect call.

    Raises:
        StaleFence, AgentBusy: its 409 answers. InitOutcomeUnknown: a 503 ``outcome_unknown``,
            or another server error (500, 502, 504…: the init may have crashed the handler, or a
            proxy gave up waiting for it): its outcome was not seen, never "not accepted".
        AgentUnavailable: any other answer but a result.
    """
    if status == 503:
        _unavailable(raw, url)
    if 500 <= status < 600:
        raise InitOutcomeUnknown(f"{url}: HTTP {status}: the init may have run")
    if status not in (200, 409):
        raise AgentUnavailable(f"{url}: HTTP {status}")
    data = json_object(raw, url)
    if status == 409:
        _refused(data, raw, body["fence"])
    if not isinstance(data.get("ok"), bool):
        raise AgentUnavailable(f"{url}: answer has no boolean 'ok'")
    if data["ok"]:
        return InitResult(ok=True)
    return InitResult(ok=False, reason=str(data.get("reason") or "general"), detail=data.get("detail"))


class _NotConnected(Exception):
    """A call that never reached the agent (connect refused or timed out): safe to send again."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _is_refused(exc: BaseException) -> bool:
    return isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, RefusedAddress)


def _refused(data: dict[str, Any], raw: bytes, fence: int) -> NoReturn:
    """Read a 409 to an init: busy, the activation known under another fence, or the fence refused.

    ``activation_id_reused``: the agent ran (or runs) this activation's init from an earlier
    attempt, begun under an older fence; it is the same init, not a new one, and no fence of the
    agent's is ahead: its outcome is asked for (``GET /init/{id}``), as after a lost answer.
    """
    text = raw[:200].decode("utf-8", "replace")
    code = error_code(data)
    if code == "busy":
        raise AgentBusy(f"agent is busy: {text}", *busy_holder(data))
    if code == "activation_id_reused":
        raise InitOutcomeUnknown(f"the agent knows this activation under another fence: {text}")
    raise StaleFence(f"agent refused fence {fence}: {text}", highest(data))


def _unavailable(raw: bytes, url: str) -> NoReturn:
    """Read a 503 to an init: an unknown outcome, or nothing run.

    An agent that stops while the init runs says ``outcome_unknown``: ask the status route,
    never read it as "not accepted". Any other 503 (``state_unwritable``, a proxy's page) ran
    nothing.
    """
    try:
        code = error_code(json_object(raw, url))
    except AgentUnavailable:
        code = None
    if code == "outcome_unknown":
        raise InitOutcomeUnknown(f"{url}: the agent stopped while the init ran")
    raise AgentUnavailable(f"{url}: HTTP 503 {code or ''}".rstrip())


def _url(target: Target, path: str) -> str:
    """The URL of an agent's route, as called and as every message names it (no ``user:pass@``)."""
    return redact_url(target.agent_url).rstrip("/") + path


def _not_ok(target: Target, now: datetime, status: int, location: str | None) -> Report:
    """The observation of an answer other than 200; a redirect is named and never followed."""
    if 300 <= status < 400:
        where = (location or "nowhere")[:200].encode("unicode_escape").decode("ascii")
        error = f"agent answered HTTP {status}, a redirect to {where}: redirects are not followed"
        log.warning("host %s: %s", target.host_id, error)
        return unreachable_report(target.host_id, now, error)
    return unreachable_report(target.host_id, now, f"agent answered HTTP {status}")
