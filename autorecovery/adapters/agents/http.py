"""Agent protocol v1 over HTTP with httpx: concurrent pulls with timeouts, retried init calls."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiohttp
import httpx
from tenacity import (
    retry,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from autorecovery.adapters.agents import InitResult, InitStatus, Target
from models.domain import Report
from models.errors import AgentBusy, AgentUnavailable, BadReport, InitOutcomeUnknown, StaleFence
from models.report import bad_report, parse_report, unreachable_report

log = logging.getLogger(__name__)


def _observe(target: Target, now: datetime, status: int, body: Any) -> Report:
    if status != 200:
        return unreachable_report(target.host_id, now, f"agent answered HTTP {status}")
    try:
        return parse_report(body, target.host_id)
    except BadReport as exc:
        log.warning("host %s: bad report: %s", target.host_id, exc)
        return bad_report(target.host_id, now, exc)


class HttpAgentClient:
    """The real agent client."""

    def __init__(
        self,
        *,
        report_timeout_s: float,
        init_timeout_s: float,
        concurrency: int,
        retries: int,
    ) -> None:
        self.report_timeout_s = report_timeout_s
        self.init_timeout_s = init_timeout_s
        self.concurrency = concurrency
        self.retries = retries
        self._client = httpx.Client(timeout=httpx.Timeout(init_timeout_s, connect=report_timeout_s))

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

    def pull_reports(self, targets: Sequence[Target], now: datetime) -> list[Report]:
        """Pull every target's report concurrently; one dead agent costs one timeout, not more."""
        if not targets:
            return []
        return asyncio.run(self._pull_all(targets, now))

    async def _pull_all(self, targets: Sequence[Target], now: datetime) -> list[Report]:
        # aiohttp, not httpx, for the bulk pull: httpcore's pool costs O(connections) per
        # request, which made a 500-host batch cost seconds of CPU instead of tens of ms.
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.report_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def one(target: Target) -> Report:
                try:
                    async with session.get(target.agent_url.rstrip("/") + "/report") as resp:
                        status = resp.status
                        body = await resp.json(content_type=None) if status == 200 else None
                except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                    return unreachable_report(target.host_id, now, _describe(exc))
                return _observe(target, now, status, body)

            return list(await asyncio.gather(*(one(t) for t in targets)))

    def get_report(self, target: Target, now: datetime) -> Report:
        """Pull one report synchronously (the activation's fresh re-check)."""
        try:
            resp = self._client.get(target.agent_url.rstrip("/") + "/report", timeout=self.report_timeout_s)
            body = resp.json() if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError) as exc:
            return unreachable_report(target.host_id, now, _describe(exc))
        return _observe(target, now, resp.status_code, body)

    def init(self, target: Target, fence: int, activation_id: str) -> InitResult:
        """POST /init with the fencing token, retrying connection failures with backoff."""
        return self._fenced_post(
            target.agent_url.rstrip("/") + "/init",
            {"fence": fence, "activation_id": activation_id},
        )

    def connect_storage_domain(
        self, target: Target, sd_id: str, fence: int, activation_id: str
    ) -> InitResult:
        """POST /storage-domains/{id}/connect with the domain's fencing token."""
        return self._fenced_post(
            f"{target.agent_url.rstrip('/')}/storage-domains/{sd_id}/connect",
            {"fence": fence, "activation_id": activation_id},
        )

    def init_status(self, target: Target, activation_id: str) -> InitStatus | None:
        """GET /init/{activation_id}: how a v2 agent's init went; None when it has no record."""
        url = f"{target.agent_url.rstrip('/')}/init/{activation_id}"
        try:
            resp = self._client.get(url, timeout=self.report_timeout_s)
        except httpx.HTTPError as exc:
            raise AgentUnavailable(f"{url}: {_describe(exc)}") from exc
        if resp.status_code == 404:
            return None
        data = _json_object(resp, url)
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
        url = f"{target.agent_url.rstrip('/')}/fence"
        try:
            resp = self._client.post(url, json={"fence": fence}, timeout=self.report_timeout_s)
        except httpx.HTTPError as exc:
            raise AgentUnavailable(f"{url}: {_describe(exc)}") from exc
        if resp.status_code in (404, 405):
            return None
        highest = _json_object(resp, url).get("highest")
        if not isinstance(highest, int) or isinstance(highest, bool):
            raise AgentUnavailable(f"{url}: answer has no integer 'highest'")
        return highest

    def _fenced_post(self, url: str, body: dict[str, Any]) -> InitResult:
        @retry(
            # Only failures to connect: a request that may have reached the agent is not sent
            # twice (a second init with the same fence would run beside the first).
            retry=retry_if_exception_type((httpx.ConnectError, httpx.ConnectTimeout)),
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            reraise=True,
        )
        def post() -> httpx.Response:
            return self._client.post(url, json=body)

        try:
            resp = post()
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise AgentUnavailable(f"{url}: {_describe(exc)}") from exc
        except httpx.HTTPError as exc:
            # The request may have reached the agent: its outcome is unknown, not a failure.
            raise InitOutcomeUnknown(f"{url}: {_describe(exc)}") from exc
        if resp.status_code == 409:
            if _error_code(resp) == "busy":
                raise AgentBusy(f"agent is busy: {resp.text[:200]}", *_busy_holder(resp))
            raise StaleFence(f"agent refused fence {body['fence']}: {resp.text[:200]}", _highest(resp))
        if resp.status_code != 200:
            raise AgentUnavailable(f"{url}: HTTP {resp.status_code}")
        data = _json_object(resp, url)
        if not isinstance(data.get("ok"), bool):
            raise AgentUnavailable(f"{url}: answer has no boolean 'ok'")
        if data["ok"]:
            return InitResult(ok=True)
        return InitResult(ok=False, reason=str(data.get("reason") or "general"), detail=data.get("detail"))


def _json_object(resp: httpx.Response, url: str) -> dict[str, Any]:
    """The answer's JSON object, or AgentUnavailable saying it is not one."""
    try:
        data = resp.json()
    except ValueError as exc:
        raise AgentUnavailable(f"{url}: answer is not JSON") from exc
    if not isinstance(data, dict):
        raise AgentUnavailable(f"{url}: answer is not a JSON object")
    return data


def _error_code(resp: httpx.Response) -> str | None:
    try:
        value = resp.json().get("error")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _busy_holder(resp: httpx.Response) -> tuple[str | None, int | None]:
    """The activation id and fence a 409 busy names, when it names them."""
    try:
        data = resp.json()
        act, fence = data.get("activation_id"), data.get("fence")
    except (ValueError, AttributeError):
        return None, None
    return (act if isinstance(act, str) else None,
            fence if isinstance(fence, int) and not isinstance(fence, bool) else None)


def _highest(resp: httpx.Response) -> int | None:
    """The highest fence a 409 says the agent accepted, when it says one."""
    try:
        value = resp.json().get("highest")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _describe(exc: BaseException) -> str:
    kind = type(exc).__name__
    text = str(exc)
    return f"{kind}: {text}" if text else kind
