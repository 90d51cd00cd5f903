"""deploy/: manifests parse and render, units verify, every secret comes from outside.

There is no Docker engine here; tests/integration/test_image_files.py installs the image's file
set into a clean virtualenv instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"

#: A value that looks like a secret or a placeholder standing in for one.
SECRETISH = [
    re.compile(r"CHANGE_?ME", re.IGNORECASE),
    re.compile(r"://[^:/\s@$]*:[^@\s${}<]+@"),  # a password inside a URL (not ${VAR} or <...>)
    re.compile(r"\b[\w.-]+:(admin|viewer):[^\s,<${]{4,}"),  # an API token entry
    re.compile(r"FLOWER_BASIC_AUTH\s*[:=]\s*[^\s$]+:[^\s]+"),
]
SECRET_VARIABLES = ("AUTORECOVERY_API_TOKENS", "FLOWER_BASIC_AUTH", "AUTORECOVERY_DATABASE_URL",
                    "AUTORECOVERY_REDIS_URL", "AUTORECOVERY_BROKER_URL", "POSTGRES_PASSWORD",
                    "REDIS_PASSWORD")


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _kustomization() -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return found


def _applied_files() -> list[Path]:
    """What `kubectl apply -k`, compose and systemd read from this repository (no example)."""
    k8s = [K8S / name for name in _kustomization()["resources"]]
    return [*k8s, K8S / "kustomization.yaml", DEPLOY / "compose.yaml", *sorted(SYSTEMD.glob("*.service")),
            DEPLOY / "Dockerfile"]


@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.yaml")), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert _docs(path)


@pytest.mark.parametrize("path", _applied_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_applied_files_carry_no_secret_or_placeholder(path: Path) -> None:
    text = path.read_text()
    for pattern in SECRETISH:
        assert not pattern.search(text), f"{path.name}: {pattern.pattern} matches"


@pytest.mark.parametrize(
    "path", sorted(DEPLOY.rglob("*.example")), ids=lambda p: str(p.relative_to(DEPLOY))
)
def test_examples_leave_every_secret_empty(path: Path) -> None:
    """A filled-in example would start with a value anyone can read here: none is given."""
    for line in path.read_text().splitlines():
        name, _, value = line.partition("=")
        if not line.startswith("#") and name.strip() in SECRET_VARIABLES:
            assert value.strip() == "", f"{path.name}: {name} has a value"


def test_secret_files_are_ignored_by_git() -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    for pattern in ("deploy/.env", "deploy/kubernetes/secrets/*.env", "deploy/systemd/*.env"):
        assert pattern in ignored


def test_kustomization_renders_with_the_operators_secret_files(tmp_path: Path) -> None:
    """Render as `kubectl apply -k` would, once the operator created the secret files."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy)
    for example in (copy / "secrets").glob("*.env.example"):
        example.with_suffix("").write_text(example.read_text().replace("=\n", "=from-the-operator\n"))
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed to render the manifests (apt-get install kubernetes-client)"
    done = subprocess.run([kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    objects = [d for d in yaml.safe_load_all(done.stdout) if d]
    kinds = [o["kind"] for o in objects]
    for kind in ("PodDisruptionBudget", "NetworkPolicy", "Deployment", "Job", "Secret"):
        assert kind in kinds, kind
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    assert all(v for s in secrets.values() for v in s["data"].values())
    image = "{newName}:{newTag}".format(**_kustomization()["images"][0])
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            pod = o["spec"]["template"]["spec"]
            for c in pod["containers"]:
                assert c["image"] == image
                for ref in c.get("envFrom", []):
                    if "secretRef" in ref:
                        assert ref["secretRef"]["name"] in secrets  # hashed name, rewritten
            assert pod["securityContext"]["runAsNonRoot"] is True


def test_kustomization_refuses_to_render_without_the_secret_files(tmp_path: Path) -> None:
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("*.env"))
    kubectl = shutil.which("kubectl")
    assert kubectl
    done = subprocess.run([kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0 and "backends.env" in done.stderr


def test_only_the_api_gets_tokens_and_only_flower_its_password() -> None:
    for doc in _docs(K8S / "worker.yaml") + _docs(K8S / "beat.yaml") + _docs(K8S / "migrate-job.yaml"):
        text = yaml.safe_dump(doc)
        assert "autorecovery-api" not in text and "autorecovery-flower" not in text
    units = {p.name: p.read_text() for p in SYSTEMD.glob("*.service")}
    # The host agent runs on each hypervisor, not beside the product: it reads its own config.
    agent = units.pop("autorecovery-agent.service")
    assert "EnvironmentFile=" not in agent and "--config /etc/autorecovery/agent.toml" in agent
    for name, text in units.items():
        files = re.findall(r"^EnvironmentFile=(\S+)", text, re.MULTILINE)
        assert files[0] == "/etc/autorecovery/common.env", name
        assert ("/etc/autorecovery/api.env" in files) == (name == "autorecovery-api.service"), name
        assert ("/etc/autorecovery/flower.env" in files) == (name == "autorecovery-flower.service"), name
    common = (SYSTEMD / "common.env.example").read_text()
    assert "\nAUTORECOVERY_API_TOKENS" not in common and "\nFLOWER_BASIC_AUTH" not in common


def _worker_commands() -> dict[str, str]:
    """How each deploy file starts each worker pool, as one line."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    found = {}
    units = {"worker": "autorecovery-worker@.service", "monitor": "autorecovery-monitor@.service"}
    for pool, unit in units.items():
        found[f"compose {pool}"] = " ".join(compose[pool]["command"])
        found[f"systemd {pool}"] = (SYSTEMD / unit).read_text().replace("\\\n", " ")
        pod = _docs(K8S / f"{pool}.yaml")[0]["spec"]["template"]["spec"]
        found[f"kubernetes {pool}"] = " ".join(pod["containers"][0]["command"])
    return found


def test_worker_concurrency_is_pinned_everywhere() -> None:
    for text in _worker_commands().values():
        assert "--concurrency=4" in text


def test_activations_and_monitoring_run_in_separate_pools_everywhere() -> None:
    """A tick's batches never queue behind activations: each pool consumes one queue."""
    for where, text in _worker_commands().items():
        queue = "activation" if where.endswith("worker") else "monitoring"
        assert re.search(rf"-Q {queue}\b(?!,)", text), (where, text)


def test_compose_and_kubernetes_use_the_one_image() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in ("migrate", "worker", "beat", "api", "flower"):
        service = compose["services"][name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") == 2 and "\nUSER 10001" in dockerfile and "ARG EXTRAS" in dockerfile


def test_units_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing but the absent /opt/autorecovery(-agent) binaries."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is needed (apt-get install systemd)"
    units = []
    for unit in SYSTEMD.glob("*.service"):
        target = tmp_path / unit.name.replace("@.", "@1.")
        shutil.copy(unit, target)
        units.append(str(target))
    done = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60,
                          check=False)
    problems = [
        line for line in (done.stdout + done.stderr).splitlines()
        if line and "/opt/autorecovery/bin/" not in line and "/opt/autorecovery-agent/bin/" not in line
    ]
    assert problems == []


def _flower_commands() -> dict[str, str]:
    """How each deploy file starts Flower, as one line of shell."""
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["flower"]["command"]
    pod = _docs(K8S / "flower.yaml")[0]["spec"]["template"]["spec"]
    assert "initContainers" not in pod  # the check runs in Flower's own container, below
    unit = (SYSTEMD / "autorecovery-flower.service").read_text().replace("\\\n", " ")
    service = "\n".join(re.findall(r"^(ExecStart(?:Pre)?=.*)$", unit, re.MULTILINE))
    return {"compose": " ".join(compose), "kubernetes": " ".join(pod["containers"][0]["command"]),
            "systemd": service}


@pytest.mark.parametrize("where", ["compose", "kubernetes", "systemd"])
def test_flower_starts_only_after_its_password_is_checked(where: str) -> None:
    """`autorecovery check-flower-auth` runs first, and Flower only when it exits 0."""
    from cli.main import build_parser, cmd_check_flower_auth

    command = _flower_commands()[where]
    check = re.search(r"\bautorecovery (check-flower-auth)\b", command)
    flower = re.search(r"\bcelery -A workers flower\b", command)
    assert check and flower and check.start() < flower.start(), command
    assert build_parser().parse_args([check.group(1)]).handler is cmd_check_flower_auth
    if where == "systemd":  # a failing ExecStartPre stops the unit before ExecStart
        assert re.search(r"^ExecStartPre=/opt/autorecovery/bin/autorecovery check-flower-auth$", command,
                         re.MULTILINE)
        assert re.search(r"^ExecStart=/opt/autorecovery/bin/celery -A workers flower", command, re.MULTILINE)
        assert "test -n" not in command
    else:  # one shell: Flower only after the check succeeded, then in the shell's place
        assert command.startswith("sh -c autorecovery check-flower-auth && exec celery -A workers flower ")
    for flag in ("--purge_offline_workers=600", "--max_tasks=20000", "--port=5555"):
        assert flag in command


def _requirement_name(spec: str) -> str:
    return re.split(r"[\[<>=!~; ]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_image_builds_are_pinned() -> None:
    """The base image by version (not a floating tag), every dependency by the constraints file."""
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base.group(1))
    assert "--constraint deploy/constraints.txt" in dockerfile
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[name.lower().replace("_", "-")] = version
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    needed = [*project["dependencies"], *project["optional-dependencies"]["deploy"],
              *project["optional-dependencies"]["agent"]]
    missing = {_requirement_name(spec) for spec in needed} - set(pins)
    assert missing == set(), missing
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name in ("postgres", "redis"):
        assert re.fullmatch(r"\w+:\d+\.\d+(\.\d+)?-\w+", compose["services"][name]["image"]), name


def test_compose_limits_every_service_and_probes_beat() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert {"cpus", "memory", "pids"} <= set(limits), name
    assert services["beat"]["healthcheck"]["test"] == ["CMD", "autorecovery", "beat-alive"]
