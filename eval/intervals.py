"""95% intervals for comparison figures: a percentile bootstrap over items, paired between
systems scored on the same items.

Each system's per-item scores are kept (``per_item/<system>.jsonl`` beside ``results.json``), so
any figure can be recomputed. A figure is a mean of per-item values, except perplexity, which is
a ratio of sums (exp of total NLL over total tokens): the bootstrap resamples items and
recomputes the figure from the resample, so both kinds get the right interval. A difference
between two systems resamples the same items for both (paired), which is what makes a small
difference on few items detectable.
"""

from __future__ import annotations

import math

import numpy as np

BOOTSTRAP = 2000
SEED = 0


def _figure(name: str, rows: list[dict]) -> float:
    """The figure ``name`` over per-item rows (NaN when no row has it)."""
    if name == "token_ppl":
        rows = [r for r in rows if r.get("tokens")]
        tokens = sum(r["tokens"] for r in rows)
        return math.exp(sum(r["nll"] for r in rows) / tokens) if tokens else float("nan")
    values = [r[name] for r in rows if r.get(name) is not None]
    return float(np.mean(values)) if values else float("nan")


def figures(rows: list[dict]) -> list[str]:
    """The figures these per-item rows can give."""
    names = sorted({k for r in rows for k, v in r.items() if isinstance(v, (int, float))})
    names = [n for n in names if n not in ("nll", "tokens", "words")]
    return (["token_ppl"] if any("nll" in r for r in rows) else []) + names


def interval(name: str, rows: list[dict], n: int = BOOTSTRAP, seed: int = SEED) -> list[float]:
    """The 95% percentile-bootstrap interval of figure ``name`` over the items that have it."""
    has = "tokens" if name == "token_ppl" else name
    rows = [r for r in rows if r.get(has) is not None]
    rng = np.random.default_rng(seed)
    k = len(rows)
    if k == 0:
        return [float("nan"), float("nan")]
    draws = [_figure(name, [rows[i] for i in rng.integers(0, k, k)]) for _ in range(n)]
    draws = [d for d in draws if not math.isnan(d)]
    if not draws:
        return [float("nan"), float("nan")]
    return [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]


def paired_difference(
    name: str, a: list[dict], b: list[dict], n: int = BOOTSTRAP, seed: int = SEED
) -> dict:
    """Figure ``name`` of system b minus system a on the items where both have it, with its
    paired 95% bootstrap interval (the same resampled items for both)."""
    by_id = {r["id"]: r for r in b}
    has = "tokens" if name == "token_ppl" else name  # the items on which both have the figure
    pairs = [
        (r, by_id[r["id"]])
        for r in a
        if r["id"] in by_id and r.get(has) is not None and by_id[r["id"]].get(has) is not None
    ]
    rng = np.random.default_rng(seed)
    k = len(pairs)
    point = _figure(name, [q for _, q in pairs]) - _figure(name, [p for p, _ in pairs])
    draws = []
    for _ in range(n if k else 0):
        pick = [pairs[i] for i in rng.integers(0, k, k)]
        d = _figure(name, [q for _, q in pick]) - _figure(name, [p for p, _ in pick])
        if not math.isnan(d):
            draws.append(d)
    lo, hi = (np.percentile(draws, 2.5), np.percentile(draws, 97.5)) if draws else (math.nan,) * 2
    return {"metric": name, "difference": point, "ci95": [float(lo), float(hi)], "n_items": k}
