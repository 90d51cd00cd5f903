"""uvicorn's h11 protocol with the limits a hypervisor's agent needs against slow clients.

A connection that has not sent a whole request head is *pending*. Pending connections get
``header_timeout_s`` to finish their head, then are closed; a client (address) keeps at most
``max_pending_per_client`` of them and the server at most ``max_pending`` (past either, the
oldest pending one goes); the server keeps at most ``max_connections`` in all. A slow anonymous
crowd therefore holds a bounded number of sockets for a bounded time, and a client that sends
its request at once (the product) is always served.

Between requests a kept-alive connection is pending too, but idle: it waits ``keepalive_s`` for
the next head to begin (longer than a tick, so each tick's pull reuses the last one's
connection), then has ``header_timeout_s`` to finish it. Under pressure the oldest pending
connections go first, idle ones included.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

#: File descriptors kept free beside the connections (libvirt, the state file, logs).
RESERVED_FDS = 64


@dataclass
class ConnectionLimits:
    """The limits, and the pending connections of one server (oldest first)."""

    header_timeout_s: float = 10.0
    keepalive_s: float = 75.0
    max_connections: int = 512
    max_pending: int = 256
    max_pending_per_client: int = 32
    pending: dict[GuardedH11, None] = field(default_factory=dict)
    per_client: Counter[str] = field(default_factory=Counter)
    evicted: int = 0

    def fitted_to_open_files(self) -> ConnectionLimits:
        """Lower ``max_connections`` (and ``max_pending``) below this process's open-file limit."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self
        room = max(16, soft - RESERVED_FDS)
        self.max_connections = min(self.max_connections, room)
        self.max_pending = min(self.max_pending, max(8, self.max_connections // 2))
        return self


class GuardedH11(H11Protocol):
    """An h11 connection that may not take its time over a request head."""

    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._peer = ""
        self._idle = False  # kept alive between requests, no byte of the next head yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._peer = self.client[0] if self.client else ""
        if len(self.connections) > self.limits.max_connections and not self._evict_oldest(None):
            transport.close()  # every other connection is a request in progress: refuse this one
            return
        self._await_head()

    def data_received(self, data: bytes) -> None:
        if self._idle:  # the next head begins: it has the header timeout from now
            self._idle = False
            self._set_deadline(self.limits.header_timeout_s)
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._head_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head(idle=True)  # kept alive: the keep-alive time for the next head to begin

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        super().connection_lost(exc)

    def _await_head(self, *, idle: bool = False) -> None:
        limits = self.limits
        if self in limits.pending:
            return
        limits.pending[self] = None
        limits.per_client[self._peer] += 1
        self._idle = idle
        self._set_deadline(limits.keepalive_s if idle else limits.header_timeout_s)
        if limits.per_client[self._peer] > limits.max_pending_per_client:
            self._evict_oldest(self._peer)
        if len(limits.pending) > limits.max_pending:
            self._evict_oldest(None)

    def _set_deadline(self, after_s: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(after_s, self._too_slow)

    def _head_done(self) -> None:
        limits = self.limits
        self._idle = False
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self in limits.pending:
            del limits.pending[self]
            limits.per_client[self._peer] -= 1
            if limits.per_client[self._peer] <= 0:
                del limits.per_client[self._peer]

    def _too_slow(self) -> None:
        if self._idle:  # kept alive its time, unused: closed, not evicted
            self._head_done()
            if not self.transport.is_closing():
                self.transport.close()
        elif self in self.limits.pending:
            self._close_pending()

    def _close_pending(self) -> None:
        self._head_done()
        self.limits.evicted += 1
        if not self.transport.is_closing():
            self.transport.close()

    def _evict_oldest(self, peer: str | None) -> bool:
        """Close the oldest pending connection (of ``peer``, or of anyone); True when one went."""
        for conn in self.limits.pending:
            if peer is None or conn._peer == peer:
                conn._close_pending()
                return True
        return False


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11]:
    """The protocol class for ``uvicorn.Config(http=...)``, bound to one server's limits."""
    return type("AgentH11", (GuardedH11,), {"limits": limits})
