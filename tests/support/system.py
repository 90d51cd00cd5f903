"""System tools some tests need (a browser, promtool, systemd-analyze): found, or not.

In CI (``CI=true``) a missing tool is a failure, never a skip (``.ci/run`` installs them).
"""

from __future__ import annotations

import os
import shutil

import pytest


def system_tool(*names: str, package: str) -> str:
    """Return the path of the first of ``names`` found; fail under CI=true, else skip.

    Args:
        package: the Debian package that ships it, for the message.
    """
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    message = f"{names[0]} is missing (Debian: apt-get install {package})"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}: CI must run this test (see .ci/run)")
    pytest.skip(message)
