"""A real headless Chromium for tests: its DOM after the page's scripts ran.

In CI (``CI=true``) a missing browser is a failure, never a skip (``.ci/run`` installs it).
"""

from __future__ import annotations

import subprocess
import tempfile

from tests.support.system import system_tool

NAMES = ("chromium", "chromium-browser", "google-chrome")
#: Flags for a browser that runs offline, alone and without a display.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def chromium() -> str:
    """Return the browser's path; fail under CI=true when there is none, else skip."""
    return system_tool(*NAMES, package="chromium")


def dump_dom(url: str, *, budget_ms: int = 20_000, timeout_s: float = 120.0) -> str:
    """Load ``url`` in a fresh browser profile and return the DOM once the page settled.

    ``--virtual-time-budget`` lets the page run its scripts (and their fetches) for that much
    virtual time before the DOM is printed.
    """
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        done = subprocess.run(
            [
                chromium(),
                *FLAGS,
                f"--user-data-dir={profile}",
                f"--virtual-time-budget={budget_ms}",
                "--dump-dom",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
