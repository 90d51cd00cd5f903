"""Count round trips to PostgreSQL from libpq's own trace of the protocol.

A round trip is the client waiting for the server: after a simple query (``Query``: BEGIN,
COMMIT, a pool check, a statement without parameters), a ``Sync`` (the end of one statement
with parameters, or of any number of pipelined ones), or a ``Flush`` to read a result in the
middle of a pipeline. Counting them from the wire, not from the
product's own statement counter, also counts transactions and pool checks.

    trips = RoundTrips()
    db = Database(url, configure=trips.configure)
    ...
    trips.take()  # round trips since the last take
"""

from __future__ import annotations

import tempfile
import threading
from typing import IO, Any

from psycopg import pq


class RoundTrips:
    """Traces every connection it configures; ``take`` counts the round trips since last time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._traces: list[tuple[IO[str], list[int]]] = []

    def configure(self, conn: Any) -> None:
        """Trace a new connection (pass as ``Database(configure=...)``)."""
        out = tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - as long as the connection
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        with self._lock:
            self._traces.append((out, [0]))

    def take(self) -> int:
        """The round trips of every traced connection since the last ``take``."""
        total = 0
        with self._lock:
            for out, read_to in self._traces:
                out.flush()
                out.seek(read_to[0])
                text = out.read()
                read_to[0] = out.tell()
                total += _bursts(text)
        return total


def _bursts(text: str) -> int:
    """Count the messages the client waits after: ``Query``, ``Sync``, and a ``Flush`` alone.

    psycopg reads a result in the middle of a pipeline after a ``Flush`` (no ``Sync``): a wait
    too. A ``Flush`` right after a ``Sync`` is the same wait.
    """
    waits = 0
    last = ""
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0] != "F":
            continue
        kind = parts[2].split(" ", 1)[0]
        if kind in ("Query", "Sync") or (kind == "Flush" and last != "Sync"):
            waits += 1
        last = kind
    return waits
