"""Compare systems (base models, adapters, decoding settings) on one test set with the same seeds.

``python -m eval compare CONFIG --out DIR``: the configuration and test set (:mod:`.config`),
the stories (:mod:`.generate`, through :mod:`storygen.items`), every metric per system
(:mod:`.score`) and the report (:mod:`.report`). ``DIR`` gets ``generations/<system>.jsonl``
and ``scores/<system>.<metric>.jsonl`` (appended story by story, each line keyed by the
settings that made it, so an interrupted run resumes where it stopped and a changed setting
redoes only what it affects), ``per_item/``, ``results.json`` (rewritten after each system),
``differences.json``, ``results.md`` and PNG plots.
"""

from __future__ import annotations

import json
from pathlib import Path

from eval.compare.config import Comparison, EvalError, load_test_set
from eval.compare.report import (
    differences_table,
    markdown_table,
    plot_metrics,
    system_differences,
    trained_on,
    trained_on_table,
)
from eval.compare.score import evaluate_system

__all__ = ["Comparison", "EvalError", "load_test_set", "markdown_table", "run"]


def run(config: Path | Comparison, out_dir: Path) -> list[dict]:
    """Run a comparison (a YAML file, or one already read) end to end; returns one result dict
    per system."""
    from storygen.curves import plot_curves, read_curves

    cmp = config if isinstance(config, Comparison) else Comparison.load(config)
    items = load_test_set(Path(cmp.test), cmp.limit, [Path(p) for p in cmp.exclude])
    out_dir.mkdir(parents=True, exist_ok=True)
    results, rows = [], {}
    for system in cmp.systems:  # results.json grows system by system
        result, rows[system.name] = evaluate_system(system, items, cmp, out_dir)
        result["trained_on"] = trained_on(system.spec())
        results.append(result)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    differences = system_differences(rows, cmp.metrics)
    (out_dir / "differences.json").write_text(json.dumps(differences, indent=2) + "\n")
    (out_dir / "results.md").write_text(
        trained_on_table(results) + markdown_table(results) + differences_table(differences)
    )
    plot_metrics(results, out_dir / "metrics.png")
    runs = {
        s.name: read_curves(Path(s.run_dir) / "loss_curve.csv")
        for s in cmp.systems
        if s.run_dir and (Path(s.run_dir) / "loss_curve.csv").exists()
    }
    if runs:
        plot_curves(runs, out_dir / "loss_curves.png")
    return results
