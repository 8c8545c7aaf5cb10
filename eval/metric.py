"""What a metric is: per-item values, and the corpus figures computed from them.

A metric module defines one :class:`Metric` and ``eval/registry.py`` lists it; the comparison
runs whatever is registered. Each metric scores one item at a time (a story and its request,
or the human reference under the system's weights) into a flat dict of numbers, saved in
``per_item/<system>.jsonl``; each of its figures is a function of those rows. Intervals and
paired differences (``eval/intervals.py``) resample the rows and recompute the figure, so a
new metric gets them without touching the comparison code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from storygen.request import Plan, StoryRequest

BOOTSTRAP = "bootstrap"
JACKKNIFE = "jackknife"


@dataclass(frozen=True)
class Figure:
    """One number a metric reports, computed from per-item rows.

    ``interval``: ``bootstrap`` (resample items; for means and ratios of sums) or
    ``jackknife`` (leave one item out; for figures over the set of stories, such as distinct
    n-grams, where a resample's duplicated stories would bias the figure)."""

    name: str
    of: Callable[[list[dict]], float]
    needs: str
    """The per-item key an item must have to count (the items without it are left out)."""
    interval: str = BOOTSTRAP


@dataclass
class Item:
    """What a metric may read about one test item, for one system."""

    id: str
    request: StoryRequest
    reference: str
    story: str | None = None
    """The system's story for this item (None when no metric asked for stories)."""
    plan: Plan | None = None
    """The plan the story was written from, if any."""
    provenance: dict[str, Any] | None = None
    """The story's provenance (engine, settings, timing), when the story was written."""
    index: int = 0
    scorer: Any = None
    """The system's weights on the transformers backend (for metrics that need logits)."""
    prompts: list[str] = field(default_factory=list)
    """Every item's prompt text under the scorer, in item order (this item's is
    ``prompts[index]``; prompt ranking reads the others)."""
    options: dict[str, Any] = field(default_factory=dict)
    """The comparison's settings a metric reads (perplexity's window, stride, token cap)."""


@dataclass(frozen=True)
class Metric:
    """A metric: its name in a comparison's ``metrics:`` list, what it needs, how it scores one
    item, and its figures."""

    name: str
    needs: str
    """``stories`` (the system's generated stories) or ``scorer`` (the system's weights)."""
    score: Callable[[Item], dict[str, Any]]
    figures: Callable[[list[dict]], list[Figure]]
    """The figures these rows can give (some depend on which fields were asked)."""
    min_items: int = 1
    options: tuple[str, ...] = ()
    """The comparison settings its scores depend on (a change rescores; others do not)."""
    reads_all_items: bool = False
    """Its score of one item reads the others (prompt ranking's distractors)."""


def mean_of(key: str) -> Callable[[list[dict]], float]:
    def of(rows: list[dict]) -> float:
        values = [r[key] for r in rows if r.get(key) is not None]
        return sum(values) / len(values) if values else float("nan")

    return of


def ratio_of(top: str, bottom: str, then: Callable[[float], float] = lambda x: x):
    """A ratio of sums over items (``then`` applied to it): pooled, not a mean of ratios."""

    def of(rows: list[dict]) -> float:
        den = sum(r[bottom] for r in rows if r.get(bottom) is not None)
        num = sum(r[top] for r in rows if r.get(bottom) is not None)
        return then(num / den) if den else float("nan")

    return of


def exp(x: float) -> float:
    return math.exp(x)
