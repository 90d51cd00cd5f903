"""The README's benchmark figures are the ones the last committed run wrote, never typed by hand."""

from __future__ import annotations

import json

from bench import readme


def test_the_readme_block_is_rendered_from_the_committed_results() -> None:
    results = json.loads(readme.LATEST.read_text(encoding="utf-8"))
    assert readme.block() == readme.render(results), (
        "README's benchmark figures differ from bench/results/latest.json: run `make bench`, "
        "or `python -m bench.readme` to re-render them"
    )


def test_the_results_carry_every_figure_the_readme_shows() -> None:
    results = json.loads(readme.LATEST.read_text(encoding="utf-8"))
    assert {"1", "2", "4"} <= set(results["pull"])
    assert {"1", "2", "hosts"} <= set(results["push"])
    for run in [*results["pull"].values(), results["push"]["1"], results["push"]["2"]]:
        assert run["wall_s"] > 0 and run["batches"] > 0 and run["statements"] > 0
    assert results["sim_rate"]["reports_per_s"] > 0 and results["naive"]["broker_messages"] > 0


def test_the_results_carry_the_limits_the_readme_compares() -> None:
    results = json.loads(readme.LATEST.read_text(encoding="utf-8"))
    assert results["limit"]["cpu_s"] > 0 and results["limit"]["reports"] == results["hosts"]
    assert results["named"]["ip"]["pulled"] == results["named"]["named"]["pulled"] == results["hosts"]
    assert results["push"]["floor"]["rows"] >= results["push"]["hosts"] > 0
    assert results["push"]["round_trips"]["per_batch"] and all(
        n > 0 for n in results["push"]["round_trips"]["per_batch"]
    )
    assert (
        results["api"]["single"]["api_cpu_ms_per_request"] > 0
        and results["api"]["bulk"]["api_cpu_us_per_report"] > 0
    )
    assert {"start", "end"} <= set(results["load"])


def test_the_readme_recovery_block_is_rendered_from_the_committed_results() -> None:
    results = json.loads(readme.LATEST_RECOVERIES.read_text(encoding="utf-8"))
    shown = readme.block(start=readme.RECOVERIES_START, end=readme.RECOVERIES_END)
    assert shown == readme.render_recoveries(results), (
        "README's recovery figures differ from bench/results/recoveries.json: run "
        "`python -m bench.recoveries`, or `python -m bench.readme` to re-render them"
    )


def test_the_recovery_results_carry_every_figure_the_readme_shows() -> None:
    results = json.loads(readme.LATEST_RECOVERIES.read_text(encoding="utf-8"))
    assert results["command"].startswith("python -m bench.recoveries")
    base, hung = results["baseline"], results["hung_agents"]
    assert base["hosts"] >= 1000 and base["hung"] == 0 and hung["hung"] > 0
    assert results["processes"] == 2 and results["goal_s"] == results["tick_interval_s"] + 10
    for run in (base, hung):
        assert run["recovery"]["hosts"] == run["hosts"] - run["hung"]
        assert 0 < run["recovery"]["up"] <= run["recovery"]["hosts"]
        assert run["tasks"]["messages"] > 0 and run["tasks"]["runs"] > 0
        assert run["inits"]["accepted"] > 0 and run["resends"] >= 0 and run["window_s"] > 0
        assert 0 <= run["busy_share"] <= 1 and run["ticks"]["closed"] > 0
    assert (results["baseline_same_hosts_s"] is None) == (base["recovery"]["all_up_s"] is None)
    assert (results["hung_ratio"] is None) == (hung["recovery"]["all_up_s"] is None)


def test_only_names_sections_and_renders_the_ratios_it_has() -> None:
    import pytest

    from bench.tick import SECTIONS, parse_only

    assert parse_only("") == frozenset(SECTIONS)
    assert parse_only("limit, pull1") == {"limit", "pull1"}
    with pytest.raises(SystemExit, match="no section nope"):
        parse_only("limit,nope")
    results = json.loads(readme.LATEST.read_text(encoding="utf-8"))
    partial = {k: results[k] for k in ("command", "load", "limit", "pull", "named")}
    shown = readme.render_partial(partial)
    assert "pulling tick ÷ limit client" in shown and "named ÷ IP" in shown and "floor" not in shown
