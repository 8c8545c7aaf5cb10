"""Scoring one system of a comparison: its stories and its weights through every metric.

Metrics that read stories score the saved stories; those that need every position's logits
(perplexity, prompt ranking) score the system's weights on the transformers backend (a
llama.cpp system is scored in fp32, dequantized from its GGUF), saved item by item to
``scores/<system>.<metric>.jsonl`` so that an interrupted run goes on where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eval.compare.config import Comparison, EvalError
from eval.compare.generate import (
    engine_memory,
    generate_all,
    open_for_append,
    read_done,
    settings_key,
)
from eval.intervals import interval
from eval.metric import Item, Metric
from eval.registry import METRICS
from eval.resources import PeakRSS
from storygen.config import ModelSpec, SystemSpec
from storygen.items import for_format
from storygen.prompt_format import V1
from storygen.request import Plan


def evaluate_system(
    system: SystemSpec, items: list[dict], cmp: Comparison, out_dir: Path
) -> tuple[dict, list[dict]]:
    """Every requested metric (``eval/registry.py``) for one system, each figure with its 95%
    interval; returns (result, per-item rows, with the in-memory extras set figures read)."""
    from storygen.backends import load_backend
    from storygen.backends.hf import TransformersBackend

    chosen = [METRICS[name] for name in cmp.metrics]
    skipped = [m.name for m in chosen if len(items) < m.min_items]
    chosen = [m for m in chosen if m.name not in skipped]
    result: dict[str, Any] = {"system": system.name, "n": len(items), "n_items": len(items)}
    if skipped:
        result["skipped"] = {m: f"needs at least {METRICS[m].min_items} items" for m in skipped}
    scorer = prompts = None
    scorer_mib = 0.0
    if any(m.needs == "scorer" for m in chosen):
        with PeakRSS() as loading:
            scorer = TransformersBackend.load(scoring_spec(system.spec()))
        scorer_mib = loading.delta_mib
        prompts = [
            scorer.prompt(for_format(it["request"], scorer.prompt_format)).text for it in items
        ]
    rows = None
    if any(m.needs == "stories" for m in chosen):
        rows = _stories(system, items, cmp, out_dir, result, scorer, scorer_mib, load_backend)
    options = {"window": cmp.window, "stride": cmp.stride, "max_story_tokens": cmp.max_story_tokens}
    contexts = [
        Item(
            id=it["id"],
            request=it["request"],
            reference=it["reference"],
            story=rows[i]["story"] if rows else None,
            plan=_plan(rows[i]["plan"]) if rows else None,
            provenance=rows[i].get("provenance") if rows else None,
            index=i,
            scorer=scorer,
            prompts=prompts or [],
            options=options,
        )
        for i, it in enumerate(items)
    ]
    # which saved story each row scored (readers' batches take the same ones)
    per_item = [
        {"id": it["id"], **({"story_key": rows[i]["key"]} if rows else {})}
        for i, it in enumerate(items)
    ]
    figures = []
    for metric in chosen:
        if metric.needs == "scorer":
            scores = score_saved(metric, system, contexts, options, out_dir)
        else:
            scores = [metric.score(c) for c in contexts]
        metric_rows = [{"id": c.id, **score} for c, score in zip(contexts, scores, strict=True)]
        for row, score in zip(per_item, scores, strict=True):
            row.update(score)
        figures += [
            f
            for f in metric.figures(metric_rows)
            if any(r.get(f.needs) is not None for r in metric_rows)
        ]
    result.update({f.name: f.of(per_item) for f in figures})
    result["ci95"] = {f.name: interval(f, per_item) for f in figures}
    result["n_per_figure"] = {
        f.name: sum(r.get(f.needs) is not None for r in per_item) for f in figures
    }
    (out_dir / "per_item").mkdir(parents=True, exist_ok=True)
    with (out_dir / "per_item" / f"{system.name}.jsonl").open("w") as f:
        for row in per_item:  # the numbers; in-memory extras (tokens, texts) start with "_"
            f.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}) + "\n")
    return result, per_item


def _stories(system, items, cmp, out_dir, result, scorer, scorer_mib, load_backend) -> list[dict]:
    """The system's stories (written now or read back), with its engine's memory and plan
    failures in ``result``."""
    spec = system.spec()
    if system.plan == "reference" and any(it["plan"] is None for it in items):
        missing = sum(it["plan"] is None for it in items)
        raise EvalError(
            f"system {system.name!r} writes from the reference plan, but {missing} test "
            "items have none (a test set from an older preprocess, or stories under five "
            "sentences): preprocess the test set again"
        )
    if scorer is not None and spec.resolved_backend() == "transformers":
        backend, loaded_mib = scorer, scorer_mib
    else:
        with PeakRSS() as loading:
            backend = load_backend(spec)
        loaded_mib = loading.delta_mib
    if system.plan != "none" and backend.prompt_format == V1:
        raise EvalError(
            f"system {system.name!r}: its adapter speaks prompt format {V1}, which has no "
            "plan: use plan: none, or an adapter trained on a later format"
        )
    gens = out_dir / "generations" / f"{system.name}.jsonl"
    before = gens.stat().st_size if gens.exists() else 0
    with PeakRSS() as memory:
        rows = generate_all(backend, system, items, cmp.seed, gens)
    wrote = (gens.stat().st_size if gens.exists() else 0) != before
    measured = round(memory.delta_mib + loaded_mib, 1)
    result["memory_mib"] = engine_memory(gens, spec, measured, wrote)
    if backend is not scorer and hasattr(backend, "close"):
        backend.close()
    if system.plan == "model":
        result["plan_failures"] = sum(bool(r.get("plan_error")) for r in rows)
    return rows


def _plan(data: dict | None) -> Plan | None:
    return Plan(data["premise"], data["beats"], data.get("origin", "model")) if data else None


def score_saved(
    metric: Metric, system: SystemSpec, contexts: list[Item], options: dict, out_dir: Path
) -> list[dict]:
    """A scorer metric's per-item values (perplexity, prompt ranking: forward passes, slow),
    saved item by item to ``scores/<system>.<metric>.jsonl``; an item scored with other
    weights or settings is scored again."""
    scorer = contexts[0].scorer
    common = dict(
        model=scoring_spec(system.spec()),
        options={k: options[k] for k in metric.options},
        prompt_format=scorer.prompt_format,
        # A score that reads the other items (ranking's distractors) depends on all of them.
        others=settings_key(prompts=contexts[0].prompts) if metric.reads_all_items else None,
    )
    keys = {
        c.id: settings_key(**common, prompt=c.prompts[c.index], reference=c.reference)
        for c in contexts
    }
    out = out_dir / "scores" / f"{system.name}.{metric.name}.jsonl"
    done = read_done(out, keys)
    todo = [c for c in contexts if c.id not in done]
    if todo:
        with open_for_append(out) as f:
            for c in tqdm(todo, desc=f"{metric.name} {system.name}"):
                row = {"id": c.id, "key": keys[c.id], "score": metric.score(c)}
                f.write(json.dumps(row) + "\n")
                f.flush()
                done[c.id] = row
    return [done[c.id]["score"] for c in contexts]


def scoring_spec(spec: ModelSpec) -> ModelSpec:
    """The transformers twin of a system's model, for the metrics that need torch's logits."""
    if spec.resolved_backend() == "transformers":
        return spec
    if spec.resolved_backend() == "openai":
        raise EvalError("perplexity and ranking need local weights; an openai system has none")
    return replace(spec, backend="transformers", quantization="fp32", threads=0)
