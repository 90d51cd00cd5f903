"""The image's file set, installed as deploy/Dockerfile does, runs every role's command.

No Docker engine here: the files the Dockerfile's build stage copies are copied into a temporary
directory and installed into a clean virtualenv; each role's entrypoint then starts from there
(outside the repository, so nothing is imported from the work tree).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.servers import Servers

# The module fixture installs the package into a fresh virtualenv (pip: minutes on a busy
# machine); pytest-timeout counts fixture setup in the first test's time.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "deploy" / "Dockerfile"


def copied_sources() -> list[str]:
    """The repository paths the build stage COPYs (``COPY --from`` lines excluded)."""
    found: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
        if match:
            found.extend(match.group(1).split())
    return found


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with the image's file set installed (as the Dockerfile's pip install)."""
    root = tmp_path_factory.mktemp("image")
    src = root / "src"
    src.mkdir()
    for name in copied_sources():
        path = REPO / name.rstrip("/")
        if path.is_dir():
            shutil.copytree(path, src / path.name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, src / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run(
        # No byte-compiling: the roles run the same from source files, and it saves a good part
        # of the install on a busy machine.
        [str(venv / "bin" / "pip"), "install", "--quiet", "--no-compile", "--constraint",
         str(src / "deploy/constraints.txt"),
         f"{src}[deploy]"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return venv


def run(venv: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUTORECOVERY_", "PYTHON"))}
    return subprocess.run(
        [str(venv / "bin" / args[0]), *args[1:]], env={**clean, **env}, cwd=venv,
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_copied_files_are_what_the_package_needs() -> None:
    assert set(copied_sources()) == {
        "pyproject.toml", "README.md", "beat_schedule.py", "deploy/constraints.txt",
        "models/", "workers/", "api/", "cli/", "autorecovery/",
    }


def test_every_role_starts_from_the_installed_files(image: Path, servers: Servers) -> None:
    env = {"AUTORECOVERY_DATABASE_URL": servers.database_url, "AUTORECOVERY_REDIS_URL": servers.redis_url,
           "AUTORECOVERY_BROKER_URL": servers.broker_url}
    done = run(image, {}, "autorecovery", "--help")
    assert done.returncode == 0 and "migrate" in done.stdout, done.stderr
    where = run(image, {}, "python", "-c", "import autorecovery; print(autorecovery.__file__)")
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout
    for role in ("worker", "beat", "inspect", "flower"):
        done = run(image, env, "celery", "-A", "workers", role, "--help")
        assert done.returncode == 0, (role, done.stderr[-2000:])
    conf = run(image, env, "python", "-c",
               "import workers; print(workers.app.conf.beat_scheduler)")
    assert conf.stdout.strip() == "workers.beat:Scheduler", conf.stderr
    migrations = run(image, env, "python", "-c",
                     "from autorecovery.adapters.store.db import migration_files as m; "
                     "print([name for _, name, _ in m()])")
    assert "0006_counters_retention.sql" in migrations.stdout, migrations.stderr
    pruned = run(image, env, "autorecovery", "prune", "--dry-run", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout)["dry_run"] is True
    refused = run(image, {}, "celery", "-A", "workers", "inspect", "ping")
    assert refused.returncode != 0 and "AUTORECOVERY_BROKER_URL" in refused.stdout + refused.stderr
