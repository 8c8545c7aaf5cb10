"""Compare systems (base models, adapters, decoding settings) on one test set with the same seeds.

Writes ``generations/<system>.jsonl`` (appended story by story, so an interrupted run resumes
without regenerating anything), ``results.json``, ``results.md`` and PNG plots.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from eval.adherence import adherence
from eval.diversity import diversity
from eval.overlap import bleu, rouge
from eval.perplexity import perplexity
from eval.ranking import prompt_ranking
from storygen.config import ConfigError, ModelSpec, from_dict
from storygen.config import SystemSpec as System
from storygen.request import RequestError, StoryRequest

METRICS = ("perplexity", "overlap", "diversity", "adherence", "ranking")


class EvalError(ValueError):
    """A comparison file or test set that cannot be used."""


@dataclass
class Comparison:
    test: str
    systems: list[System]
    limit: int = 20
    seed: int = 1000
    metrics: list[str] = field(default_factory=lambda: list(METRICS))

    @classmethod
    def load(cls, path: Path) -> Comparison:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise EvalError(f"cannot read {path}: {exc}") from exc
        if not isinstance(data, dict) or not data.get("systems") or not data.get("test"):
            raise EvalError(f"{path}: needs 'test' (a JSONL file) and a list of 'systems'")
        try:
            systems = [System.from_dict(s, str(path)) for s in data.pop("systems")]
            comparison = from_dict(cls, {**data, "systems": systems}, str(path))
        except ConfigError as exc:
            raise EvalError(str(exc)) from exc
        names = [s.name for s in systems]
        if len(set(names)) != len(names):
            raise EvalError(f"{path}: system names must be unique, got {names}")
        unknown = set(comparison.metrics) - set(METRICS)
        if unknown:
            raise EvalError(f"{path}: unknown metrics {sorted(unknown)}; known: {METRICS}")
        return comparison


def load_test_set(path: Path, limit: int) -> list[dict]:
    """Test items (request + human reference) from a JSONL written by ``finetune preprocess``."""
    if not path.exists():
        raise EvalError(f"test set {path} does not exist")
    items = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append(
                    {
                        "id": str(row["id"]),
                        "reference": row["completion"],
                        "request": StoryRequest.from_dict(row["request"]),
                    }
                )
            except (ValueError, KeyError, TypeError) as exc:
                detail = exc.errors if isinstance(exc, RequestError) else exc
                raise EvalError(f"{path}:{n}: not a test item ({detail})") from exc
            if len(items) >= limit:
                break
    if not items:
        raise EvalError(f"{path} holds no test item")
    return items


def _read_done(path: Path) -> dict[str, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                done[row["id"]] = row
            except (ValueError, KeyError):
                continue  # a line torn by an interrupted run: generate that story again
    return done


def generate_all(backend, system: System, items: list[dict], seed: int, out: Path) -> list[dict]:
    """Generate (or reuse) one story per item; item i always uses seed ``seed + i``."""
    from storygen.generation import generate_story

    done = _read_done(out)
    todo = [(i, it) for i, it in enumerate(items) if it["id"] not in done]
    with out.open("a") as f:
        for i, item in tqdm(todo, desc=f"generate {system.name}", disable=not todo):
            story = generate_story(backend, item["request"], system.sampling_for(seed + i))
            row = {"id": item["id"], "story": story.text, "provenance": story.provenance}
            f.write(json.dumps(row) + "\n")
            f.flush()
            done[item["id"]] = row
    return [done[it["id"]] for it in items]


def evaluate_system(system: System, items: list[dict], cmp: Comparison, out_dir: Path) -> dict:
    """All requested metrics for one system.

    Stories come from the system's own backend (llama.cpp by default on a CPU). Perplexity and
    prompt ranking need every position's logits from torch, so they score the same weights on
    the transformers backend: a llama.cpp system is scored in fp32 dequantized from its GGUF.
    """
    from storygen.backends import load_backend
    from storygen.backends.hf import TransformersBackend

    result: dict[str, Any] = {"system": system.name, "n": len(items)}
    refs = [it["reference"] for it in items]
    scorer = None
    if {"perplexity", "ranking"} & set(cmp.metrics):
        scorer = TransformersBackend.load(scoring_spec(system.spec()))
        lm = scorer.lm
    if "perplexity" in cmp.metrics:
        pairs = [(scorer.prompt(it["request"]).text, it["reference"]) for it in items]
        result.update(perplexity(lm.model, lm.tokenizer, pairs))
    needs_gen = {"overlap", "diversity", "adherence"} & set(cmp.metrics)
    if needs_gen:
        gens_dir = out_dir / "generations"
        gens_dir.mkdir(parents=True, exist_ok=True)
        spec = system.spec()
        backend = scorer if spec.resolved_backend() == "transformers" else load_backend(spec)
        rows = generate_all(backend, system, items, cmp.seed, gens_dir / f"{system.name}.jsonl")
        hyps = [r["story"] for r in rows]
        if "overlap" in cmp.metrics:
            result["bleu"] = bleu(hyps, refs)
            result.update(rouge(hyps, refs))
        if "diversity" in cmp.metrics:
            result.update(diversity(hyps))
        if "adherence" in cmp.metrics:
            result.update(adherence([it["request"] for it in items], hyps))
        result["mean_words"] = sum(len(h.split()) for h in hyps) / len(hyps)
    if "ranking" in cmp.metrics and len(items) > 9:
        prompts = [scorer.prompt(it["request"]).text for it in items]
        result.update(prompt_ranking(lm.model, lm.tokenizer, prompts, refs))
    return result


def scoring_spec(spec: ModelSpec) -> ModelSpec:
    """The transformers twin of a system's model, for the metrics that need torch's logits."""
    if spec.resolved_backend() == "transformers":
        return spec
    if spec.resolved_backend() == "openai":
        raise EvalError("perplexity and ranking need local weights; an openai system has none")
    return replace(spec, backend="transformers", quantization="fp32", threads=0)


TABLE_COLUMNS = (
    "token_ppl",
    "word_ppl",
    "bleu",
    "rouge1",
    "rouge2",
    "rougeL",
    "distinct_1",
    "distinct_2",
    "self_bleu",
    "repeated_4gram_rate",
    "adherence",
    "prompt_ranking_acc",
    "mean_words",
)


def markdown_table(results: list[dict]) -> str:
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in results)]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in results:
        cells = []
        for c in cols:
            v = r.get(c)
            cells.append(
                ""
                if v is None or (isinstance(v, float) and math.isnan(v))
                else f"{v:.3f}"
                if isinstance(v, float)
                else str(v)
            )
        lines.append(f"| {r['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_metrics(results: list[dict], png: Path) -> None:
    """One small bar chart per metric, systems side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in TABLE_COLUMNS if all(isinstance(r.get(c), (int, float)) for r in results)]
    if not cols:
        return
    ncols = 4
    nrows = math.ceil(len(cols) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    names = [r["system"] for r in results]
    for ax, col in zip(axes.flat, cols):
        ax.bar(names, [r[col] for r in results], color=[f"C{i}" for i in range(len(names))])
        ax.set_title(col, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def run(config: Path, out_dir: Path) -> list[dict]:
    """Run a comparison file end to end; returns one result dict per system."""
    from finetune.curves import plot_curves, read_curves

    cmp = Comparison.load(config)
    items = load_test_set(Path(cmp.test), cmp.limit)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = [evaluate_system(s, items, cmp, out_dir) for s in cmp.systems]
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out_dir / "results.md").write_text(markdown_table(results))
    plot_metrics(results, out_dir / "metrics.png")
    runs = {
        s.name: read_curves(Path(s.run_dir) / "loss_curve.csv")
        for s in cmp.systems
        if s.run_dir and (Path(s.run_dir) / "loss_curve.csv").exists()
    }
    if runs:
        plot_curves(runs, out_dir / "loss_curves.png")
    return results
