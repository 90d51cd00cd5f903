"""Following an activation until it ends: a status line while it is in flight."""

from __future__ import annotations

import time
from collections.abc import Callable

from rich.text import Text

from cli.ops.render import Output, status_cell

DEFAULT_WAIT_S = 120.0
#: Seconds between two looks at an activation while waiting (tests make it shorter).
POLL_S = 0.5
IN_FLIGHT = frozenset({"queued", "sending", "sent"})

#: Returns the activation's state and a note on its object, e.g. ``("running", "host up")``.
Look = Callable[[], tuple[str, str]]


def watch(out: Output, label: Text, look: Look, deadline: float) -> str | None:
    """Call ``look`` until the state it returns is no longer queued or running; return that state.

    The state and the note show after ``label``: a spinner on a terminal, and one line on
    stderr per change of state. Returns None when ``deadline`` (``time.monotonic``) passes first.
    """
    started = time.monotonic()
    seen: str | None = None
    with out.status(label) as status:
        while True:
            state, note = look()
            elapsed = time.monotonic() - started
            line = Text.assemble(
                label,
                " ",
                status_cell(state) if state not in IN_FLIGHT else Text(state, style="cyan"),
                f" ({note}, {elapsed:.1f}s)",
            )
            if state != seen:
                out.progress_line(line)
                seen = state
            status.update(line)
            if state not in IN_FLIGHT:
                return state
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(POLL_S, left))
