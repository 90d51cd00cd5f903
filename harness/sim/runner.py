"""Run the fleet simulator: blocking for the CLI, or in a background thread for tests."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import NamedTuple

import uvicorn
from fastapi import FastAPI

from harness.sim.fleet import Fleet
from harness.sim.server import create_app, request_stop
from models.errors import PermanentError

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8900
#: Hung (silent-agent) requests end on stop; this bounds the wait for any other stragglers.
GRACEFUL_SHUTDOWN_S = 3


class SimulatorStartError(PermanentError):
    """The simulator's server did not come up (port taken, bad address, timeout)."""


class RunningSimulator(NamedTuple):
    """A simulator served from a background thread; unpacks as (server, thread, base_url)."""

    server: uvicorn.Server
    thread: threading.Thread
    base_url: str

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the server down and wait for its thread."""
        stop(self.server, self.thread, timeout_s)


def build_server(
    fleet: Fleet, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None
) -> uvicorn.Server:
    """Build (without starting) a uvicorn server for the simulator app (``token``: agents' token)."""
    return _server(create_app(fleet, token=token), host, port)


#: How long the simulator keeps an idle connection.
KEEP_ALIVE_S = 75


def _server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        # Idle connections are kept longer than a tick, as by an agent behind aiohttp's server
        # (75 s): each tick reuses the connections of the last one.
        timeout_keep_alive=KEEP_ALIVE_S,
    )
    return uvicorn.Server(config)


def serve(
    fleet: Fleet, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None
) -> None:
    """Serve the simulator until interrupted (blocking)."""
    logger.info("fleet simulator serving %d hosts on %s:%d", len(fleet.hosts), host, port)
    build_server(fleet, host, port, token).run()


def start_in_thread(
    fleet: Fleet,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_s: float = 10.0,
    token: str | None = None,
) -> RunningSimulator:
    """Serve the simulator from a daemon thread and return once it accepts connections.

    ``port=0`` picks a free port; ``base_url`` carries the bound one. With ``token``, every
    agent route needs it as a bearer token.

    Raises:
        SimulatorStartError: when the server does not start within ``timeout_s``.
    """
    running = _start(build_server(fleet, host, port, token), host, port, timeout_s)
    logger.info("fleet simulator serving %d hosts at %s", len(fleet.hosts), running.base_url)
    return running


def start_app_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 10.0
) -> RunningSimulator:
    """Serve any app (a deliberately broken agent, say) from a thread, as ``start_in_thread``.

    Raises:
        SimulatorStartError: when the server does not start within ``timeout_s``.
    """
    return _start(_server(app, host, port), host, port, timeout_s)


def _start(server: uvicorn.Server, host: str, port: int, timeout_s: float) -> RunningSimulator:
    thread = threading.Thread(target=server.run, name="fleet-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise SimulatorStartError(f"simulator on {host}:{port} exited during startup")
        if time.monotonic() > deadline:
            stop(server, thread, timeout_s)
            raise SimulatorStartError(f"simulator on {host}:{port} not started in {timeout_s}s")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    reach = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - compares, not binds
    reach = f"[{reach}]" if ":" in reach else reach
    with socket.create_connection((reach.strip("[]"), bound_port), timeout=timeout_s):
        pass
    return RunningSimulator(server, thread, f"http://{reach}:{bound_port}")


def stop(server: uvicorn.Server, thread: threading.Thread, timeout_s: float = 10.0) -> None:
    """Stop a server started by ``start_in_thread`` and wait for its thread to end."""
    app = server.config.app
    if isinstance(app, FastAPI):
        request_stop(app)
    server.should_exit = True
    thread.join(timeout_s)
    if thread.is_alive():
        logger.warning("fleet simulator did not stop in %.1fs; forcing exit", timeout_s)
        server.force_exit = True
        thread.join(timeout_s)
