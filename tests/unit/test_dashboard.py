"""The Grafana dashboard, checked panel by panel (no Grafana server in Debian or on PyPI to render
it): a legend, thresholds that rise from a base, no sum across API replicas, the cluster
variable, the observer gate as a state, and the JSON generated from deploy/grafana/dashboard.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import pytest

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
DASHBOARD = json.loads((GRAFANA / "autorecovery.json").read_text())
PANELS = DASHBOARD["panels"]
ONE = "max without (instance, pod)"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("dashboard", GRAFANA / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_json_is_generated_from_the_script() -> None:
    assert (GRAFANA / "autorecovery.json").read_text() == _generator().render(), (
        "run python deploy/grafana/dashboard.py"
    )


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: p["title"])
def test_every_panel_has_a_legend_and_names_every_series(panel: dict[str, Any]) -> None:
    legend = panel["options"]["legend"]
    assert legend["showLegend"] is True and legend["displayMode"] in {"list", "table"}
    for target in panel["targets"]:
        assert target["legendFormat"].strip(), (panel["title"], target["expr"])
        for label in re.findall(r"\{\{(\w+)\}\}", target["legendFormat"]):
            kept = re.search(r"by \(([^)]*)\)", target["expr"])
            assert kept and label in kept.group(1), (panel["title"], label, target["expr"])


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: p["title"])
def test_every_panel_has_sane_thresholds(panel: dict[str, Any]) -> None:
    thresholds = panel["fieldConfig"]["defaults"]["thresholds"]
    assert thresholds["mode"] == "absolute"
    values = [s["value"] for s in thresholds["steps"]]
    assert values[0] is None, "the first step is the base"
    rest = values[1:]
    assert all(v is not None and v >= 0 for v in rest)
    assert rest == sorted(rest) and len(set(rest)) == len(rest), values
    assert all(s["color"] for s in thresholds["steps"])
    assert panel["fieldConfig"]["defaults"]["unit"]


@pytest.mark.parametrize("panel", PANELS, ids=lambda p: p["title"])
def test_no_query_sums_one_series_across_api_replicas(panel: dict[str, Any]) -> None:
    """Every replica reports the whole fleet: a sum comes only after a max over replicas."""
    for target in panel["targets"]:
        expr = target["expr"]
        for found in re.finditer(r"\bsum(?: by \([^)]*\))? \(", expr):
            assert expr[found.end() :].startswith(ONE), (panel["title"], expr)


def test_a_cluster_variable_filters_the_cluster_panels() -> None:
    [variable] = [v for v in DASHBOARD["templating"]["list"] if v["name"] == "cluster"]
    assert variable["multi"] and variable["includeAll"]
    assert "label_values(autorecovery_hosts, cluster)" in variable["definition"]
    uses = [t["expr"] for p in PANELS for t in p["targets"] if 'cluster=~"$cluster"' in t["expr"]]
    assert len(uses) >= 4


def test_the_observer_gate_shows_a_state_not_a_number() -> None:
    [gate] = [p for p in PANELS if p["title"] == "Observer gate"]
    texts = {
        value: option["text"]
        for mapping in gate["fieldConfig"]["defaults"]["mappings"]
        for value, option in mapping["options"].items()
    }
    assert texts == {"0": "open", "1": "CLOSED"}
    assert gate["targets"][0]["legendFormat"] == "{{reason}}"


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in PANELS:
        g = panel["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, panel["title"]
        assert g["x"] + g["w"] <= 24
        cells |= mine
