"""Why an agent could not be heard, said in one sentence: no library class names, no ``ssl:default``."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import httpx
import pytest

from autorecovery.adapters.agents.answers import failure_text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _aiohttp_failure(url: str) -> BaseException:
    async def pull() -> BaseException:
        async with aiohttp.ClientSession() as session:
            try:
                await session.get(url)
            except aiohttp.ClientError as exc:
                return exc
        raise AssertionError("no failure")

    return asyncio.run(pull())


def _httpx_failure(url: str) -> BaseException:
    try:
        httpx.get(url)
    except httpx.HTTPError as exc:
        return exc
    raise AssertionError("no failure")


@pytest.mark.parametrize("fail", [_aiohttp_failure, _httpx_failure])
def test_a_refused_connection_is_one_clean_sentence(fail: object) -> None:
    port = _closed_port()
    text = failure_text(fail(f"http://127.0.0.1:{port}/report"))  # type: ignore[operator]
    assert text.startswith("cannot connect") and text.endswith("connection refused"), text
    for leak in ("ssl:default", "Error", "Errno", "Connect call failed", "["):
        assert leak not in text, text


def test_the_pull_names_the_address_it_could_not_reach() -> None:
    port = _closed_port()
    assert failure_text(_aiohttp_failure(f"http://127.0.0.1:{port}/report")) == (
        f"cannot connect to 127.0.0.1:{port}: connection refused"
    )


@pytest.mark.parametrize(("exc", "text"), [
    (aiohttp.ServerDisconnectedError(), "the agent closed the connection without a complete answer"),
    (httpx.RemoteProtocolError("peer closed"), "the agent closed the connection without a complete answer"),
    (TimeoutError(), "no complete answer in time"),
    (ConnectionResetError(104, "Connection reset by peer"), "connection reset"),
])
def test_other_failures(exc: BaseException, text: str) -> None:
    assert failure_text(exc) == text
