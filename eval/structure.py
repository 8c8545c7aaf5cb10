"""Story structure: does a story follow the beats of its plan?

- **Beats** (stories written from a plan): ``beat_coverage`` is the mean share of the plan's
  beats whose content is found in the story, ``beat_order`` the mean share of found beats that
  come in the plan's order (:func:`storygen.arcs.beat_coverage`).

The arc a request names is not scored here: no arc judge beat the majority baseline on
held-out labelled stories (``docs/judges``: always answering "unclear" did better), so an arc
figure would measure something other than its name.
"""

from __future__ import annotations

from eval.metric import Figure, Item, Metric, mean_of
from storygen.arcs import beat_coverage


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
    out = {}
    if item.plan is not None and item.plan.beats:
        c = beat_coverage(item.story, item.plan.beats)
        out.update(beat_coverage=c.coverage, beat_order=c.order)
    return out


def _figures(rows: list[dict]) -> list[Figure]:
    return [Figure(k, mean_of(k), k) for k in ("beat_coverage", "beat_order")]


METRIC = Metric("structure", "stories", _score, _figures)
