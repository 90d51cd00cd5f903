"""Failpoints: named places where a test can freeze a process, to show what fencing guarantees.

Off unless AUTORECOVERY_FAILPOINTS names them; never set in production.
"""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger(__name__)


def hit(enabled: str, name: str) -> None:
    """Freeze this process with SIGSTOP at failpoint ``name`` when ``enabled`` lists it."""
    if name in {n.strip() for n in enabled.split(",") if n.strip()}:
        log.warning("failpoint %s: stopping process %s", name, os.getpid())
        os.kill(os.getpid(), signal.SIGSTOP)
