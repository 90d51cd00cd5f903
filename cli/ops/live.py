"""``--watch``: draw a command's view again every few seconds until Ctrl-C (which exits 0).

On a terminal the view is redrawn in place, as ``watch(1)`` does: the screen is cleared once, then
each round is rendered off screen and written in one piece from the top-left corner, every line
erasing what is left of the previous round's, and the rest of the screen erased below it (no
clear between rounds, so no flicker). The cursor is hidden meanwhile and shown again on the way
out, Ctrl-C included. In a pipe the rounds follow each other, one header line before each, and
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

#: The terminal controls of an in-place redraw (ECMA-48 / xterm).
HOME = "\x1b[H"
CLEAR_SCREEN = "\x1b[2J"
ERASE_LINE_END = "\x1b[K"
ERASE_BELOW = "\x1b[J"
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"


def every(out: Output, title: str, draw: Callable[[], int], every_s: float, rounds: int | None) -> int:
    """Call ``draw`` every ``every_s`` seconds, ``rounds`` times (None: until Ctrl-C); return 0.

    Raises:
        ApiFailure: a failure that waiting will not cure (not found, auth, bad input).
    """
    in_place = not out.json_mode and out.out.is_terminal
    done = 0
    if in_place:
        _write(out, HIDE_CURSOR + HOME + CLEAR_SCREEN)
    try:
        while rounds is None or done < rounds:
            if in_place:
                _redraw(out, lambda: _round(out, title, draw, every_s))
            else:
                _round(out, title, draw, every_s)
            done += 1
            if rounds is None or done < rounds:
                time.sleep(every_s)
    except KeyboardInterrupt:
        pass  # the way out of a watch: not an error
    finally:
        if in_place:
            _write(out, SHOW_CURSOR)
    return Exit.OK


def _round(out: Output, title: str, draw: Callable[[], int], every_s: float) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out.say(Text(f"every {every_s:g}s: {title}    {stamp}", style="dim"))
    try:
        draw()
    except ApiFailure as exc:
        if exc.exit_code not in _PASSING:
            raise
        out.failure(exc)


def _redraw(out: Output, render: Callable[[], None]) -> None:
    """Render a round off screen (its failures too), then write it over the previous one."""
    with out.out.capture() as shown, out.err.capture() as failed:
        render()
    lines = (shown.get() + failed.get()).splitlines()[: max(out.out.size.height - 1, 1)]
    _write(out, HOME + "".join(line + ERASE_LINE_END + "\n" for line in lines) + ERASE_BELOW)


def _write(out: Output, text: str) -> None:
    out.out.file.write(text)
    out.out.file.flush()
