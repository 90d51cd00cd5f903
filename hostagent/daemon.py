"""Start the agent: check the token and state directory, build the app, listen (optionally TLS)."""

from __future__ import annotations

import fcntl
import json
import logging
import math
import socket
import ssl
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from hostagent.config import AgentConfig
from hostagent.host import HostView
from hostagent.http_server import ConnectionLimits, guarded_protocol
from hostagent.hypervisor import Hypervisor
from hostagent.persist import DiskStore
from hostagent.protocol import ProtocolState
from hostagent.runner import Operations
from hostagent.server import Guard, create_app
from hostagent.snapshot import Snapshots
from models.errors import InvalidInput

log = logging.getLogger(__name__)

_MAKE_TOKEN = "(umask 077; openssl rand -hex 32 > {path})"  # noqa: S105 - advice, not a secret


def utcnow() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def read_token(path: Path) -> bytes:
    """Read the bearer token; refuse a missing, empty, or group/other-readable file.

    Raises:
        InvalidInput: naming ``token_file`` and saying what to do.
    """
    try:
        info = path.stat()
        token = path.read_bytes().strip()
    except FileNotFoundError:
        raise InvalidInput(
            "token_file", f"{path} does not exist; create it: {_MAKE_TOKEN.format(path=path)}"
        ) from None
    except OSError as exc:
        raise InvalidInput("token_file", f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise InvalidInput(
            "token_file",
            f"{path} has mode {stat.S_IMODE(info.st_mode):04o}: group or other users have access to it; "
            f"run `chmod 600 {path}`",
        )
    if not token:
        raise InvalidInput(
            "token_file", f"{path} is empty; put a token in it: {_MAKE_TOKEN.format(path=path)}"
        )
    if is_weak_token(token):
        raise InvalidInput(
            "token_file",
            f"{path} holds a weak token (at least {MIN_TOKEN_LEN} printable characters, "
            f"{MIN_DISTINCT} of them distinct): use the one `autorecovery hosts enroll` wrote, "
            f"or {_MAKE_TOKEN.format(path=path)}",
        )
    return token


#: What the agent accepts as a token: enrolment writes 64 hex characters.
MIN_TOKEN_LEN = 32
MIN_DISTINCT = 10


def is_weak_token(token: bytes) -> bool:
    """True for a token too short, with spaces or control bytes, or repeating a few characters."""
    printable = all(0x21 <= byte <= 0x7E for byte in token)
    return len(token) < MIN_TOKEN_LEN or not printable or len(set(token)) < MIN_DISTINCT


def check_tls(cert: Path, key: Path) -> None:
    """Refuse a key anyone may read, and a certificate and key that do not load together.

    Raises:
        InvalidInput: naming ``server.tls_key_file`` or ``server.tls_cert_file``.
    """
    try:
        mode = stat.S_IMODE(key.stat().st_mode)
    except OSError as exc:
        raise InvalidInput("server.tls_key_file", f"cannot read {key}: {exc.strerror or exc}") from None
    if mode & 0o007:
        raise InvalidInput(
            "server.tls_key_file", f"{key} has mode {mode:04o}: anyone may read it; run `chmod 600 {key}`"
        )
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise InvalidInput("server.tls_cert_file", f"{cert} with {key} does not load: {exc}") from None


def lock_state_dir(state_dir: Path) -> IO[bytes]:
    """Create the state directory and hold its lock: a second agent on it is refused.

    Two agents on one state would each accept inits: the host would run two at once.
    """
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = (state_dir / "agent.lock").open("ab")
    except OSError as exc:
        raise InvalidInput("state_dir", f"cannot use {state_dir}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise InvalidInput("state_dir", f"another agent runs on {state_dir}; stop it first") from None
    return handle


@dataclass(slots=True)
class Agent:
    """Everything a running agent holds."""

    config: AgentConfig
    host: HostView
    ops: Operations
    app: Guard
    #: The host's last look; ``start`` it before serving (``run`` does).
    looks: Snapshots


def build_agent(
    config: AgentConfig, hypervisor: Hypervisor, token: bytes, *, new_state: bool = False
) -> Agent:
    """Assemble the agent from its parts (the composition root; tests pass a test-driver hypervisor).

    ``new_state``: create a new state (a new ``state_id``, fences from 0), keeping an old file
    aside; only on the operator's explicit request. Without it a missing or unusable state
    refuses to start (``InvalidInput`` naming ``state_dir``).
    """
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = DiskStore(config.state_dir)
    if new_state:
        state_id = store.create()
        log.warning("host %s: new agent state %s created (--new-state)", config.host_id, state_id)
    state = ProtocolState(store, utcnow, keep_results=config.init.keep_results)
    host = HostView(config, hypervisor, utcnow)
    ops = Operations(state, config.host_id)
    looks = Snapshots(host, config.probes.period_s)
    app = Guard(create_app(host, ops, config.server.max_body_bytes, looks), token)
    return Agent(config, host, ops, app, looks)


def listen(bind: str, port: int) -> socket.socket:
    """Bind and listen on ``bind:port`` (port 0: a free one)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise InvalidInput("server.bind", f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None
    sock.listen(1024)
    return sock


def check(config: AgentConfig) -> int:
    """Check the setup without serving or changing anything: token, TLS, a fresh report.

    Print the report and the first problem an init would find; return 0 when the host is clean.
    """
    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    read_token(config.token_file)
    if config.server.tls_cert_file is not None and config.server.tls_key_file is not None:
        check_tls(config.server.tls_cert_file, config.server.tls_key_file)
    hypervisor = LibvirtHypervisor(config.libvirt.uri)
    try:
        host = HostView(config, hypervisor, utcnow)
        observation = host.observe()
        problem = host.verdict(observation)
    finally:
        hypervisor.close()
    print(json.dumps(observation.body(config.host_id), indent=2))
    if problem is None:
        print(f"host {config.host_id}: clean; an init would answer ok")
        return 0
    print(f"host {config.host_id}: {problem.reason.value}: {problem.detail}")
    return 1


def run(
    config: AgentConfig, *, bind: str | None = None, port: int | None = None, new_state: bool = False
) -> None:
    """Run the agent until SIGTERM or SIGINT; print the address it listens on once it does."""
    import uvicorn

    from hostagent.libvirt_hypervisor import LibvirtHypervisor

    token = read_token(config.token_file)
    tls: dict[str, Any] = {}
    if config.server.tls_cert_file is not None and config.server.tls_key_file is not None:
        check_tls(config.server.tls_cert_file, config.server.tls_key_file)
        tls = {
            "ssl_certfile": str(config.server.tls_cert_file),
            "ssl_keyfile": str(config.server.tls_key_file),
        }
    lock = lock_state_dir(config.state_dir)
    hypervisor = LibvirtHypervisor(config.libvirt.uri)
    agent = build_agent(config, hypervisor, token, new_state=new_state)
    agent.looks.start()  # the first look before the first request: a report never waits for one
    sock = listen(bind or config.server.bind, config.server.port if port is None else port)
    host, actual_port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    shown = f"[{host}]" if ":" in host else host
    print(
        f"autorecovery agent: host {config.host_id} listening on {scheme}://{shown}:{actual_port}", flush=True
    )
    log.info(
        "host %s: agent on %s://%s:%d, libvirt %s",
        config.host_id,
        scheme,
        shown,
        actual_port,
        config.libvirt.uri,
    )
    limits = ConnectionLimits(
        header_timeout_s=config.server.header_timeout_s,
        keepalive_s=config.server.keepalive_s,
        max_connections=config.server.max_connections,
        max_pending=config.server.max_connections // 2,
        max_pending_per_client=config.server.max_pending_per_client,
    ).fitted_to_open_files()
    log.info(
        "host %s: at most %d connections, %d still sending their request head, %gs for a head",
        config.host_id,
        limits.max_connections,
        limits.max_pending,
        limits.header_timeout_s,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            agent.app,
            http=guarded_protocol(limits),
            # Accept a few at a time: the limits run between accept bursts, never past the fd limit.
            backlog=64,
            timeout_keep_alive=math.ceil(config.server.keepalive_s),
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=5,
            **tls,
        )
    )
    try:
        server.run(sockets=[sock])
    finally:
        agent.looks.stop()
        hypervisor.close()
        lock.close()
        sock.close()
