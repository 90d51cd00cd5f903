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
