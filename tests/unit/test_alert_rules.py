"""Alert rules run by ``promtool test rules`` on recorded series, and their kube-prometheus copy.

In CI a missing promtool (Debian: the prometheus package) is a failure, never a skip.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support.system import system_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
ALERTS = PROMETHEUS / "alerts.yaml"
MONITORING = DEPLOY / "kubernetes" / "monitoring"
TROUBLESHOOTING = Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md"
RUNBOOK = "https://github.com/example/autorecovery/blob/main/docs/troubleshooting.md#"


def _promtool() -> str:
    return system_tool("promtool", package="prometheus")


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        [_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_on_recorded_series_pass() -> None:
    """Long-down host, no doubling by replicas, powered-off hosts quiet, 401s loud, up quarantine."""
    done = subprocess.run(
        [_promtool(), "test", "rules", "alerts.test.yaml"],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_runbook_url_into_the_troubleshooting_page() -> None:
    headings = re.findall(r"^#+ (.+)$", TROUBLESHOOTING.read_text(), flags=re.MULTILINE)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    for rule in _rules():
        url = rule["annotations"].get("runbook_url", "")
        assert url.startswith(RUNBOOK), rule["alert"]
        assert url.removeprefix(RUNBOOK) in anchors, (rule["alert"], url)


def test_no_rule_sums_a_series_across_replicas() -> None:
    """Each API replica reports the whole fleet: a sum must come after a max over replicas."""
    for rule in _rules():
        expr = " ".join(rule["expr"].split())
        for match in re.finditer(r"\bsum(?: by \([^)]*\))? \(", expr):
            after = expr[match.end() :]
            assert after.startswith("max without (instance, pod)"), (rule["alert"], expr)


def test_the_prometheus_rule_is_generated_from_alerts_yaml() -> None:
    spec = importlib.util.spec_from_file_location("prometheusrule", PROMETHEUS / "prometheusrule.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (MONITORING / "prometheusrule.yaml").read_text()
    assert committed == module.render(), "run python deploy/prometheus/prometheusrule.py"
    rule = yaml.safe_load(committed)
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == yaml.safe_load(ALERTS.read_text())["groups"]


def test_the_service_monitor_scrapes_the_api_service_with_a_token() -> None:
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    service = next(
        d
        for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "api.yaml").read_text())
        if d and d["kind"] == "Service"
    )
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["spec"]["selector"].items()
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics" and endpoint["authorization"]["type"] == "Bearer"
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert set(kustomization["resources"]) == {"prometheusrule.yaml", "servicemonitor.yaml"}
    [secret] = kustomization["secretGenerator"]
    assert secret["name"] == endpoint["authorization"]["credentials"]["name"]
