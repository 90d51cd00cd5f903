"""The floor of an API request on this machine: uvicorn (httptools, as the API runs it) serving
an ASGI app that reads the body and answers a small JSON object; no middleware, no database.

    python -m bench.api_floor PORT

``bench.api`` pushes the same reports to it, with the same client, beside the API: what a
single push costs the API above what any request costs here.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

_ANSWER = b'{"ok":true}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the request's body, answer 200 with a small JSON object."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _ANSWER})


def main() -> None:
    """Serve the floor app on 127.0.0.1:PORT until stopped."""
    uvicorn.run(
        app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
