"""The README tells the truth: its settings table is the one the code renders, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

from autorecovery.settings_doc import settings_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def _block(name: str) -> str:
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", README, re.S)
    assert match, f"README has no {name} block"
    return match.group(1).strip()


def test_settings_table_matches_the_code() -> None:
    assert _block("settings-table") == settings_table(), (
        "README's settings table is stale: run `python -m autorecovery.settings_doc`"
    )


def test_readme_set_up_commands_are_make_targets_and_ci_runs_the_test_one() -> None:
    setup = README.split("## Set up", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^make (\w+)", setup, re.M)
    assert commands == ["demo", "test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in commands:
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "make test" in (ROOT / ".ci" / "run").read_text()
