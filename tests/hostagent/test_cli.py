"""``autorecovery agent`` in the CLI: the rest of the CLI never needs libvirt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_the_cli_builds_without_importing_libvirt() -> None:
    done = run_python(
        "import sys, cli.main as cli; cli.build_parser();"
        "assert 'libvirt' not in sys.modules and 'hostagent.daemon' not in sys.modules"
    )
    assert done.returncode == 0, done.stderr


def test_without_libvirt_the_agent_says_how_to_install_it(tmp_path: Path) -> None:
    done = run_python(
        "import sys; sys.modules['libvirt'] = None; import cli.main as cli;"
        f"sys.exit(cli.main(['agent', '--config', '{tmp_path / 'agent.toml'}']))"
    )
    assert done.returncode == 1
    assert "needs libvirt: pip install autorecovery-agent" in done.stderr


def test_agent_help_lists_config_bind_and_port() -> None:
    done = run_python("import cli.main as cli; cli.main(['agent', '--help'])")
    assert all(option in done.stdout for option in ("--config", "--bind", "--port"))
