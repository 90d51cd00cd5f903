"""What the simulator's routes share: the fleet, the stopping flag, JSON answers, silent hangs."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from harness.sim.fleet import Fleet

#: How long a silent agent keeps a request open: longer than any sane client timeout.
SILENT_HANG_S = 3600.0
_POLL_S = 0.25


@dataclass(slots=True)
class SimState:
    """What the app shares between requests: the fleet, and whether the server is stopping."""

    fleet: Fleet
    stopping: bool = False


def json_response(body: object, status_code: int = 200) -> Response:
    """Answer JSON, serialised directly (jsonable_encoder would walk every host on big answers)."""
    content = json.dumps(body, separators=(",", ":")).encode()
    return Response(content, status_code=status_code, media_type="application/json")


async def hang(request: Request, state: SimState) -> Response:
    """Keep a silent agent's request open until the client leaves or the server stops."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SILENT_HANG_S
    while loop.time() < deadline and not state.stopping:
        await asyncio.sleep(_POLL_S)
        if await request.is_disconnected():
            break
    return json_response({"detail": "agent silent"}, status_code=503)
