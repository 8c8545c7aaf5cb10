"""95% intervals for comparison figures, and paired differences between systems.

Each system's per-item scores are kept (``per_item/<system>.jsonl`` beside ``results.json``, the
stories in ``generations/``), so any figure can be recomputed. A figure
(:class:`~eval.metric.Figure`) is a function of per-item rows: a mean, a ratio of sums
(perplexity: exp of total NLL over total tokens; corpus BLEU from summed n-gram counts), or a
figure over the set of stories (distinct n-grams, self-BLEU).

- ``bootstrap`` figures: the percentile bootstrap resamples items and recomputes the figure
  from the resample, so means and ratios both get the right interval.
- ``jackknife`` figures: resampling with replacement would put the same story twice in a set
  whose figure counts repeats, so these leave one group of items out at a time (at most
  :data:`GROUPS` groups) and take the normal interval of the jackknife standard error.

A difference between two systems uses the same resampled (or left-out) items for both
(paired), which is what makes a small difference on few items detectable.
"""

from __future__ import annotations

import math

import numpy as np

from eval.metric import JACKKNIFE, Figure

BOOTSTRAP = 2000
GROUPS = 50
SEED = 0
Z95 = 1.959963984540054


def _has(figure: Figure, rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get(figure.needs) is not None]


def _groups(k: int) -> list[np.ndarray]:
    return [g for g in np.array_split(np.arange(k), min(k, GROUPS)) if len(g)]


def _jackknife(values: list[float], point: float) -> list[float]:
    values = [v for v in values if not math.isnan(v)]
    g = len(values)
    if g < 2 or math.isnan(point):
        return [float("nan"), float("nan")]
    mean = sum(values) / g
    se = math.sqrt((g - 1) / g * sum((v - mean) ** 2 for v in values))
    return [point - Z95 * se, point + Z95 * se]


def interval(figure: Figure, rows: list[dict], n: int = BOOTSTRAP, seed: int = SEED) -> list:
    """The 95% interval of ``figure`` over the items that have it."""
    rows = _has(figure, rows)
    k = len(rows)
    if k == 0:
        return [float("nan"), float("nan")]
    if figure.interval == JACKKNIFE:
        drops = [set(g.tolist()) for g in _groups(k)]
        keep = [[r for j, r in enumerate(rows) if j not in drop] for drop in drops]
        return _jackknife([figure.of(part) for part in keep], figure.of(rows))
    rng = np.random.default_rng(seed)
    draws = [figure.of([rows[i] for i in rng.integers(0, k, k)]) for _ in range(n)]
    draws = [d for d in draws if not math.isnan(d)]
    if not draws:
        return [float("nan"), float("nan")]
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def paired_difference(
    figure: Figure, a: list[dict], b: list[dict], n: int = BOOTSTRAP, seed: int = SEED
) -> dict:
    """``figure`` of system b minus system a on the items where both have it, with its paired
    95% interval (the same items resampled, or left out, for both)."""
    by_id = {r["id"]: r for r in _has(figure, b)}
    pairs = [(r, by_id[r["id"]]) for r in _has(figure, a) if r["id"] in by_id]
    k = len(pairs)

    def diff(pick: list[tuple[dict, dict]]) -> float:
        return figure.of([q for _, q in pick]) - figure.of([p for p, _ in pick])

    point = diff(pairs) if k else float("nan")
    if figure.interval == JACKKNIFE:
        drops = [set(g.tolist()) for g in _groups(k)]
        parts = [[p for j, p in enumerate(pairs) if j not in drop] for drop in drops]
        lo, hi = _jackknife([diff(part) for part in parts], point)
    else:
        rng = np.random.default_rng(seed)
        draws = [diff([pairs[i] for i in rng.integers(0, k, k)]) for _ in range(n if k else 0)]
        draws = [d for d in draws if not math.isnan(d)]
        lo, hi = (
            (np.percentile(draws, 2.5), np.percentile(draws, 97.5)) if draws else (math.nan,) * 2
        )
    return {
        "metric": figure.name,
        "difference": point,
        "ci95": [float(lo), float(hi)],
        "n_items": k,
    }
