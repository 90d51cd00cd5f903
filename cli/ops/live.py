"""``--watch``: draw a command's view again every few seconds until Ctrl-C (which exits 0).

On a terminal each round clears the screen and starts with a header line (the command and the
time of the round); in a pipe the rounds follow each other, one header line before each, and
with ``--json`` each round is one JSON line. An API that cannot be reached or answers late is
reported in the round and watched again; any other failure (a 404, a refused token) ends it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from rich.text import Text

from cli.ops.client import ApiFailure, Exit
from cli.ops.render import Output

#: Seconds between two rounds when ``--watch`` is given without a number.
DEFAULT_EVERY_S = 2.0
#: Failures worth watching through: the API comes back by itself.
_PASSING = frozenset({Exit.UNREACHABLE, Exit.TIMEOUT})


def every(out: Output, title: str, draw: Callable[[], int], every_s: float, rounds: int | None) -> int:
    """Call ``draw`` every ``every_s`` seconds, ``rounds`` times (None: until Ctrl-C); return 0.

    Raises:
        ApiFailure: a failure that waiting will not cure (not found, auth, bad input).
    """
    done = 0
    try:
        while rounds is None or done < rounds:
            if done and not out.json_mode and out.out.is_terminal:
                out.out.clear()
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            out.say(Text(f"every {every_s:g}s: {title}    {stamp}", style="dim"))
            try:
                draw()
            except ApiFailure as exc:
                if exc.exit_code not in _PASSING:
                    raise
                out.failure(exc)
            done += 1
            if rounds is None or done < rounds:
                time.sleep(every_s)
    except KeyboardInterrupt:
        pass  # the way out of a watch: not an error
    return Exit.OK
