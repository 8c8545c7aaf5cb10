"""The metrics a comparison can run: one line each. A new metric is a module with a ``METRIC``
(:class:`eval.metric.Metric`) and its line here; the comparison code does not change."""

from __future__ import annotations

from eval import adherence, diversity, length, overlap, perplexity, ranking, speed, structure
from eval.metric import Figure, Metric

METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        perplexity.METRIC,
        overlap.METRIC,
        diversity.METRIC,
        adherence.METRIC,
        structure.METRIC,
        length.METRIC,
        ranking.METRIC,
        speed.METRIC,
    )
}


def figures_for(rows: list[dict], names: list[str] | None = None) -> list[Figure]:
    """The figures of the named metrics (default: all) that ``rows`` can give."""
    return [
        f
        for m in METRICS.values()
        if names is None or m.name in names
        for f in m.figures(rows)
        if any(r.get(f.needs) is not None for r in rows)
    ]
