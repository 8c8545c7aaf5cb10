"""Compare systems (base models, adapters, decoding settings) on one test set with the same seeds.

Writes ``generations/<system>.jsonl`` and ``scores/<system>.perplexity.jsonl`` (appended story
by story, each line keyed by the settings that made it, so an interrupted run resumes where it
stopped and a changed setting redoes only what it affects), ``per_item/``, ``results.json``
(rewritten after each system), ``results.md`` and PNG plots.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from eval.intervals import interval, paired_difference
from eval.metric import Item, Metric
from eval.registry import METRICS as METRIC_REGISTRY
from eval.registry import figures_for
from eval.resources import PeakRSS
from eval.scoring import ENGINES, Engine, ScoringError
from storygen.config import ConfigError, ModelSpec, from_dict
from storygen.config import SystemSpec as System
from storygen.prompt_format import V1
from storygen.request import Plan, RequestError, StoryRequest

METRICS = tuple(METRIC_REGISTRY)


class EvalError(ValueError):
    """A comparison file or test set that cannot be used."""


@dataclass
class Comparison:
    test: str
    systems: list[System]
    limit: int = 20
    seed: int = 1000
    exclude: list[str] = field(default_factory=list)
    """JSONL files (e.g. another adapter's train.jsonl) whose story ids are left out of the test
    set, so that adapters trained on different preprocessings are scored on stories none of
    them saw."""
    metrics: list[str] = field(default_factory=lambda: list(METRICS))
    window: int | None = None
    """Perplexity: tokens the model sees at once (default: its context, at most 2048)."""
    stride: int | None = None
    """Perplexity: tokens scored per window step (default: half the window); each story token
    is scored once, with up to ``window - stride`` tokens of context before it."""
    max_story_tokens: int | None = None
    """Perplexity: score each reference story's first this many tokens only (default: all)."""
    scoring_engine: str = "transformers"
    """Perplexity and prompt ranking: ``transformers`` (the forward pass), ``ctranslate2`` (the
    same numbers, on a CPU; not reliably faster on 2 cores) or ``auto`` (CTranslate2 where it
    applies); see :mod:`eval.scoring`."""

    @classmethod
    def load(cls, path: Path) -> Comparison:
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise EvalError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> Comparison:
        """A comparison from its YAML form (``path`` names where it came from in errors)."""
        data = dict(data) if isinstance(data, dict) else data
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
        for name in ("window", "stride", "max_story_tokens"):
            value = getattr(comparison, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise EvalError(f"{path}: {name} must be a whole number, got {value!r}")
            if value is not None and value < 1:
                raise EvalError(f"{path}: {name} must be at least 1, got {value}")
        if not isinstance(comparison.exclude, list) or not all(
            isinstance(p, str) for p in comparison.exclude
        ):
            raise EvalError(
                f"{path}: exclude must be a list of JSONL paths, got {comparison.exclude!r}"
            )
        if comparison.window and comparison.stride and comparison.stride > comparison.window:
            raise EvalError(f"{path}: stride ({comparison.stride}) exceeds window")
        if comparison.scoring_engine not in ENGINES:
            raise EvalError(
                f"{path}: scoring_engine must be one of {', '.join(ENGINES)}, got "
                f"{comparison.scoring_engine!r}"
            )
        return comparison


TEST_SET_FORM = (
    "a test set is the JSONL that `python -m finetune preprocess` writes (its test.jsonl, or "
    "valid.jsonl), one story a line with its id, request and completion"
)


def _ids(path: Path) -> set[str]:
    """The story ids of a JSONL written by ``finetune preprocess``."""
    try:
        with path.open() as f:
            return {str(json.loads(line)["id"]) for line in f if line.strip()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"cannot read the story ids of {path} to exclude them: {exc}") from exc


def load_test_set(path: Path, limit: int, exclude: list[Path] = ()) -> list[dict]:
    """Test items (request + human reference) from a JSONL written by ``finetune preprocess``,
    the first ``limit`` whose ids none of the ``exclude`` files hold."""
    excluded = set().union(*map(_ids, exclude))
    if not path.exists():
        raise EvalError(f"test set {path} does not exist; {TEST_SET_FORM}")
    if path.is_dir() or path.suffix.lower() in (".csv", ".parquet", ".wp_source", ".wp_target"):
        raise EvalError(
            f"{path}: {TEST_SET_FORM}. Make one from these stories first: python -m finetune "
            f"preprocess {path} --test-fraction 0.1 --out DIR, then use DIR/test.jsonl"
        )
    items = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if str(row["id"]) in excluded:
                    continue
                plan = row.get("plan")
                items.append(
                    {
                        "id": str(row["id"]),
                        "reference": row["completion"],
                        "request": StoryRequest.from_dict(row["request"]),
                        "plan": Plan(plan["premise"], plan["beats"], "person") if plan else None,
                    }
                )
            except (ValueError, KeyError, TypeError) as exc:
                detail = exc.errors if isinstance(exc, RequestError) else exc
                raise EvalError(f"{path}:{n}: not a test item ({detail}); {TEST_SET_FORM}") from exc
            if len(items) >= limit:
                break
    if not items:
        raise EvalError(f"{path} holds no test item")
    return items


def settings_key(**settings: Any) -> str:
    """A short hash of what made a result, saved with it: a result made otherwise (another
    model, sampling, seed or window) is not reused."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def story_inputs(item: dict) -> dict[str, Any]:
    """What a story is written from, for the keys of saved stories: the item's request and
    plan (an item re-made by a new preprocess keeps its id, not its text)."""
    plan = item.get("plan")
    return {"request": item["request"].to_dict(), "plan": plan.to_dict() if plan else None}


def _read_done(path: Path, keys: dict[str, str]) -> dict[str, dict]:
    """The rows of ``path`` made with the key their item has now (``keys``: id -> key)."""
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
                if keys.get(row["id"]) == row["key"]:
                    done[row["id"]] = row
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by an interrupted run: make that result again
    return done


def _open_for_append(path: Path):
    """``path`` opened to append whole lines: a last line torn by a killed run (no line break
    at its end) is cut off first, or the next row would be glued to it and lost too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size:
        with path.open("rb+") as f:
            f.seek(-1, 2)
            if f.read(1) != b"\n":  # only then is the whole file read, to find the cut
                f.seek(0)
                f.truncate(f.read().rfind(b"\n") + 1)
    return path.open("a")


def generate_all(backend, system: System, items: list[dict], seed: int, out: Path) -> list[dict]:
    """Generate (or reuse) one story per item; item i always uses seed ``seed + i``. A system
    with ``plan: model`` plans each story first (same seed), ``plan: reference`` writes from
    the beats of the item's human story; the plan used is saved with the story."""
    from storygen.generation import generate_plan, generate_story

    keys = {
        it["id"]: settings_key(
            model=system.spec(),
            sampling=system.sampling_for(seed + i).to_dict(),
            plan=system.plan,
            item=story_inputs(it),
        )
        for i, it in enumerate(items)
    }
    done = _read_done(out, keys)
    todo = [(i, it) for i, it in enumerate(items) if it["id"] not in done]
    if not todo:
        return [done[it["id"]] for it in items]
    with _open_for_append(out) as f:
        for i, item in tqdm(todo, desc=f"generate {system.name}"):
            if hasattr(backend, "clear_cache"):  # every story computes its whole prompt, so
                backend.clear_cache()  # the speed figures do not depend on the story before
            sampling = system.sampling_for(seed + i)
            request = for_format(item["request"], backend.prompt_format)
            plan, plan_error = None, None
            if system.plan == "model":
                try:
                    plan = generate_plan(backend, request, sampling)
                except RequestError as exc:  # no usable plan: the story is written without
                    plan_error = str(exc)
            elif system.plan == "reference":
                plan = item["plan"]
            story = generate_story(backend, request, sampling, plan=plan)
            row = {
                "id": item["id"],
                "key": keys[item["id"]],
                "story": story.text,
                "plan": plan.to_dict() if plan is not None else None,
                "plan_error": plan_error,
                "provenance": story.provenance,
            }
            f.write(json.dumps(row) + "\n")
            f.flush()
            done[item["id"]] = row
    return [done[it["id"]] for it in items]


def for_format(request: StoryRequest, version: str) -> StoryRequest:
    """The request as a model of prompt format ``version`` can be asked it: a version-1
    adapter has no arc field, so it is asked without the arc (and scored on it like any
    other system: it was simply never told)."""
    return replace(request, arc="") if version == V1 and request.arc else request


def evaluate_system(
    system: System, items: list[dict], cmp: Comparison, out_dir: Path
) -> tuple[dict, list[dict]]:
    """Every requested metric (``eval/registry.py``) for one system, each figure with its 95%
    interval; returns (result, per-item rows, with the in-memory extras set figures read).

    Stories come from the system's own backend (llama.cpp by default on a CPU). Metrics that
    need every position's logits (perplexity, prompt ranking) score the same weights on the
    transformers backend: a llama.cpp system is scored in fp32 dequantized from its GGUF.
    """
    from storygen.backends import load_backend
    from storygen.backends.hf import TransformersBackend

    chosen = [METRIC_REGISTRY[name] for name in cmp.metrics]
    skipped = [m.name for m in chosen if len(items) < m.min_items]
    chosen = [m for m in chosen if m.name not in skipped]
    result: dict[str, Any] = {"system": system.name, "n": len(items), "n_items": len(items)}
    if skipped:
        result["skipped"] = {
            m: f"needs at least {METRIC_REGISTRY[m].min_items} items" for m in skipped
        }
    scorer = prompts = nll = None
    scorer_mib = 0.0
    if any(m.needs == "scorer" for m in chosen):
        with PeakRSS() as loading:
            scorer = TransformersBackend.load(scoring_spec(system.spec()))
        scorer_mib = loading.delta_mib
        try:
            nll = Engine(scorer.lm.model, scorer.lm.tokenizer, cmp.scoring_engine)
        except ScoringError as exc:
            raise EvalError(f"system {system.name!r}: {exc}") from exc
        prompts = [
            scorer.prompt(for_format(it["request"], scorer.prompt_format)).text for it in items
        ]
    rows = None
    if any(m.needs == "stories" for m in chosen):
        spec = system.spec()
        if scorer is not None and spec.resolved_backend() == "transformers":
            backend, loaded_mib = scorer, scorer_mib
        else:
            with PeakRSS() as loading:
                backend = load_backend(spec)
            loaded_mib = loading.delta_mib
        if system.plan == "reference" and any(it["plan"] is None for it in items):
            missing = sum(it["plan"] is None for it in items)
            raise EvalError(
                f"system {system.name!r} writes from the reference plan, but {missing} test "
                "items have none (a test set from an older preprocess, or stories under five "
                "sentences): preprocess the test set again"
            )
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
            nll=nll,
            prompts=prompts or [],
            options=options,
        )
        for i, it in enumerate(items)
    ]
    per_item = [{"id": it["id"]} for it in items]
    figures = []
    engines: Counter = Counter()
    for metric in chosen:
        if metric.needs == "scorer":
            try:
                scores, used = score_saved(metric, system, contexts, options, out_dir)
            except ScoringError as exc:
                raise EvalError(f"system {system.name!r}: {exc}") from exc
            engines.update(used)
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
    if engines:  # items by the engine that scored them, over the scorer metrics
        result["scoring_engine"] = dict(sorted(engines.items()))
    result["ci95"] = {f.name: interval(f, per_item) for f in figures}
    result["n_per_figure"] = {
        f.name: sum(r.get(f.needs) is not None for r in per_item) for f in figures
    }
    (out_dir / "per_item").mkdir(parents=True, exist_ok=True)
    with (out_dir / "per_item" / f"{system.name}.jsonl").open("w") as f:
        for row in per_item:  # the numbers; in-memory extras (tokens, texts) start with "_"
            f.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}) + "\n")
    return result, per_item


def engine_memory(gens: Path, spec: ModelSpec, measured: float, wrote: bool) -> float:
    """The story engine's resident memory: what loading it added plus what writing added on top
    at its peak. The run that writes stories keeps its figure beside them
    (``<system>.memory.json``), since a rerun that reuses the stories only loads the engine."""
    path = gens.with_name(gens.stem + ".memory.json")
    key = settings_key(model=spec)
    if wrote:
        path.write_text(json.dumps({"key": key, "memory_mib": measured}) + "\n")
    elif path.exists():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return float(saved["memory_mib"])
    return measured  # stories written before figures were kept: this run's loading only


def _plan(data: dict | None) -> Plan | None:
    return Plan(data["premise"], data["beats"], data.get("origin", "model")) if data else None


def score_saved(metric: Metric, system: System, contexts: list[Item], options: dict, out_dir: Path):
    """A scorer metric's per-item values (perplexity, prompt ranking: forward passes, slow),
    saved item by item to ``scores/<system>.<metric>.jsonl`` so that an interrupted run goes on
    where it stopped; an item scored with other weights or settings is scored again. Returns
    the values and, for each item, the engine that scored it (:mod:`eval.scoring`: the engines
    give the same numbers, so a saved value is reused whichever engine scored it)."""
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
    done = _read_done(out, keys)
    todo = [c for c in contexts if c.id not in done]
    if todo:
        with _open_for_append(out) as f:
            for c in tqdm(todo, desc=f"{metric.name} {system.name}"):
                before = Counter(c.nll.texts)
                score = metric.score(c)
                # The engine(s) that scored this item's texts (a text too long for CTranslate2
                # goes to the forward pass): "ctranslate2", "transformers" or both.
                engine = "+".join(sorted(c.nll.texts - before)) or c.nll.name
                row = {"id": c.id, "key": keys[c.id], "engine": engine, "score": score}
                f.write(json.dumps(row) + "\n")
                f.flush()
                done[c.id] = row
    return [done[c.id]["score"] for c in contexts], [
        done[c.id].get("engine", "not recorded") for c in contexts
    ]


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
    "arc_match",
    "arc_correlation",
    "beat_coverage",
    "beat_order",
    "prompt_ranking_acc",
    "mean_words",
    "tokens_per_s",
    "first_token_s",
    "memory_mib",
)


def markdown_table(results: list[dict]) -> str:
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in results)]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in results:
        cells = []
        for c in cols:
            v = r.get(c)
            ci = r.get("ci95", {}).get(c)
            cells.append(
                ""
                if v is None or (isinstance(v, float) and math.isnan(v))
                else f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
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


def run(config: Path | Comparison, out_dir: Path) -> list[dict]:
    """Run a comparison (a YAML file, or one already read) end to end; returns one result dict
    per system."""
    from finetune.curves import plot_curves, read_curves

    cmp = config if isinstance(config, Comparison) else Comparison.load(config)
    items = load_test_set(Path(cmp.test), cmp.limit, [Path(p) for p in cmp.exclude])
    out_dir.mkdir(parents=True, exist_ok=True)
    results, rows = [], {}
    for system in cmp.systems:  # results.json grows system by system
        result, rows[system.name] = evaluate_system(system, items, cmp, out_dir)
        results.append(result)
        (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    differences = system_differences(rows, cmp.metrics)
    (out_dir / "differences.json").write_text(json.dumps(differences, indent=2) + "\n")
    (out_dir / "results.md").write_text(markdown_table(results) + differences_table(differences))
    plot_metrics(results, out_dir / "metrics.png")
    runs = {
        s.name: read_curves(Path(s.run_dir) / "loss_curve.csv")
        for s in cmp.systems
        if s.run_dir and (Path(s.run_dir) / "loss_curve.csv").exists()
    }
    if runs:
        plot_curves(runs, out_dir / "loss_curves.png")
    return results


def system_differences(rows: dict[str, list[dict]], metrics: list[str]) -> list[dict]:
    """Every later system minus every earlier one, per figure both have per item, with the
    paired 95% interval (``rows``: each system's per-item rows of this run, in order)."""
    out = []
    names = list(rows)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            figures_b = {f.name for f in figures_for(rows[b], metrics)}
            for figure in figures_for(rows[a], metrics):
                if figure.name in figures_b:
                    out.append({"a": a, "b": b, **paired_difference(figure, rows[a], rows[b])})
    return out


def differences_table(differences: list[dict]) -> str:
    """The differences as Markdown: b - a, with the interval; '*' where it excludes zero."""
    if not differences:
        return ""
    lines = [
        "",
        "Differences (b - a, paired bootstrap 95% interval over the same items; * excludes 0):",
        "",
        "| b | a | metric | difference | 95% interval | items |",
        "|---|---|---|---|---|---|",
    ]
    for d in differences:
        lo, hi = d["ci95"]
        star = " *" if lo > 0 or hi < 0 else ""
        lines.append(
            f"| {d['b']} | {d['a']} | {d['metric']} | {d['difference']:+.3f}{star} | "
            f"[{lo:+.3f}, {hi:+.3f}] | {d['n_items']} |"
        )
    return "\n".join(lines) + "\n"
