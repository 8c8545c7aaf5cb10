"""Story structure: does a story follow its requested arc, and the beats of its plan?

- **Arc adherence** (stories whose request names an arc): ``arc_match`` is the share whose
  measured trajectory fits the requested shape best of the six, ``arc_correlation`` the mean
  correlation of the trajectory with the requested shape (-1 to 1). Stories too short for a
  trajectory are left out (``arc_n`` in :func:`arc_adherence`; a comparison's
  ``n_per_figure``).
- **Beats** (stories written from a plan): ``beat_coverage`` is the mean share of the plan's
  beats whose content is found in the story, ``beat_order`` the mean share of found beats that
  come in the plan's order (:func:`storygen.arcs.beat_coverage`).

Both read the story with :mod:`storygen.arcs`, the same code that tags training stories, so
"follows the arc" means one thing in training data and in evaluation.
"""

from __future__ import annotations

import math

from eval.metric import Figure, Item, Metric, mean_of
from storygen.arcs import beat_coverage, fit_arc, trajectory
from storygen.request import StoryRequest


def arc_scores(request: StoryRequest, story: str) -> dict[str, float] | None:
    """``{"arc_match": 0 or 1, "arc_correlation": r}`` for one story, or None when the request
    names no arc or the story is too short to measure."""
    if not request.arc:
        return None
    values = trajectory(story)
    if values is None:
        return None
    fit = fit_arc(values)
    r = fit.scores[request.arc]
    return {
        "arc_match": float(fit.arc == request.arc),
        "arc_correlation": 0.0 if math.isnan(r) else r,
    }


def arc_adherence(requests: list[StoryRequest], stories: list[str]) -> dict[str, float]:
    """Arc adherence over the stories whose request names an arc (see the module doc)."""
    rows = [arc_scores(q, s) for q, s in zip(requests, stories, strict=True)]
    rows = [r for r in rows if r is not None]
    asked = sum(bool(q.arc) for q in requests)
    if not rows:
        return {"arc_n": 0, "arc_asked": asked}
    return {
        "arc_match": sum(r["arc_match"] for r in rows) / len(rows),
        "arc_correlation": sum(r["arc_correlation"] for r in rows) / len(rows),
        "arc_n": len(rows),
        "arc_asked": asked,
    }


def beat_adherence(beats: list[list[str] | None], stories: list[str]) -> dict[str, float]:
    """Beat coverage and order over the stories written from a plan (``beats`` None for the
    others)."""
    rows = [beat_coverage(story, b) for b, story in zip(beats, stories, strict=True) if b]
    if not rows:
        return {"beat_n": 0}
    return {
        "beat_coverage": sum(r.coverage for r in rows) / len(rows),
        "beat_order": sum(r.order for r in rows) / len(rows),
        "beat_n": len(rows),
    }


def _score(item: Item) -> dict[str, float]:
    out = dict(arc_scores(item.request, item.story) or {})
    if item.plan is not None and item.plan.beats:
        c = beat_coverage(item.story, item.plan.beats)
        out.update(beat_coverage=c.coverage, beat_order=c.order)
    return out


def _figures(rows: list[dict]) -> list[Figure]:
    names = ("arc_match", "arc_correlation", "beat_coverage", "beat_order")
    return [Figure(k, mean_of(k), k) for k in names]


METRIC = Metric("structure", "stories", _score, _figures)
