"""Render the README's settings table from ``Settings`` so that the two cannot drift.

python -m autorecovery.settings_doc    # prints the table
"""

from __future__ import annotations

from autorecovery.settings import ENV_PREFIX, Settings


def settings_table() -> str:
    """Return a Markdown table of every setting: variable, default, meaning."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = "(unset)" if default in (None, "") else f"`{default}`"
        lines.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {info.description or ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
