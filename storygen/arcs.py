"""Story structure: a story's emotional trajectory, the six arc shapes, and its beats.

**Trajectory.** The story's sentences are cut into :data:`WINDOWS` consecutive, equal runs and
each run gets VADER's compound valence (Hutto and Gilbert 2014; the lexicon ships inside the
``vaderSentiment`` wheel): the short-story version of the sliding windows of Reagan et al.
(2016). Four windows were chosen over 20 smoothed points, three windows and a cumulative
valence on the first 40 hand-labelled stories; ``python -m finetune tagger-accuracy`` reports
the held-out other 40.

**Arc.** The trajectory is compared with each of the six shapes of :data:`storygen.request.ARCS`
(piecewise-linear templates in :data:`SHAPES`) by Pearson correlation. The best shape is the
story's arc; its correlation is the confidence. A flat story (no variation) has no arc.

**Beats.** A story's plan, extracted from the story itself: it is cut into five equal parts by
sentence (:data:`storygen.request.BEAT_NAMES`) and each part's most central sentence (the one
sharing the most content words with the rest of its part) is its beat; the premise is the most
central of the other sentences of the whole story. :func:`beat_coverage` checks the reverse:
is each beat's content found in a story, and in the given order?
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import numpy as np

from storygen.request import ARCS, BEAT_NAMES, MAX_BEAT, Plan
from storygen.text import sentences

WINDOWS = 4
MIN_SENTENCES = 5
"""Fewer sentences carry no trajectory worth a shape."""
MIN_RANGE = 0.3
"""A trajectory whose windows differ by less than this (VADER's scale runs from -1 to 1) is
flat: no shape is named, however well its small wiggles correlate with one."""
ARC_CONFIDENCE = 0.6
"""The tagger names an arc only when the trajectory correlates with its shape at least this well
(fixed before the tagger was measured against hand labels)."""
MAX_BEAT_WORDS = 20
BEAT_FOUND = 0.5
"""A beat is found in a story where one sentence, or two in a row, hold this share of its
content words."""

# Knots (position, fortune) of each shape; the fortune's scale is irrelevant to a correlation.
SHAPES = {
    "rags to riches": ((0.0, -1.0), (1.0, 1.0)),
    "tragedy": ((0.0, 1.0), (1.0, -1.0)),
    "man in a hole": ((0.0, 1.0), (0.5, -1.0), (1.0, 1.0)),
    "icarus": ((0.0, -1.0), (0.5, 1.0), (1.0, -1.0)),
    "cinderella": ((0.0, -1.0), (1 / 3, 1.0), (2 / 3, -1.0), (1.0, 1.0)),
    "oedipus": ((0.0, 1.0), (1 / 3, -1.0), (2 / 3, 1.0), (1.0, -1.0)),
}
assert set(SHAPES) == set(ARCS)

_WORD = re.compile(r"[a-z][a-z'’]+")
STOPWORDS = frozenset(
    """a an the and or but if then so of to in on at by for with from as into onto upon about
    over under after before again than that this these those there here it its it's is are was
    were be been being am do does did done have has had having i me my we our you your he him
    his she her they them their what which who whom whose when where why how all any both each
    few more most other some such no nor not only own same too very can will just would could
    should shall may might must one up down out off also back like said says say just now still
    even ever never yet""".split()
)


def shape(arc: str, points: int = WINDOWS) -> np.ndarray:
    """The arc's template read at ``points`` evenly spaced positions."""
    xs, ys = zip(*SHAPES[arc], strict=True)
    return np.interp(np.linspace(0.0, 1.0, points), xs, ys)


@cache
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def valences(parts: list[str]) -> np.ndarray:
    """VADER's compound valence (-1 to 1) of each text."""
    score = _analyzer().polarity_scores
    return np.array([score(p)["compound"] for p in parts], dtype=float)


def trajectory(text: str, windows: int = WINDOWS) -> np.ndarray | None:
    """The story's emotional trajectory: VADER's valence of each of ``windows`` consecutive,
    equal runs of sentences (the window is the smoothing), or None below
    :data:`MIN_SENTENCES`."""
    parts = sentences(text)
    if len(parts) < max(MIN_SENTENCES, windows):
        return None
    runs = np.array_split(np.arange(len(parts)), windows)
    return valences([" ".join(parts[i] for i in run) for run in runs])


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denominator) if denominator > 1e-12 else float("nan")


@dataclass(frozen=True)
class ArcFit:
    """How a trajectory matches each shape; ``arc`` is the best one ("" for a flat story)."""

    arc: str
    correlation: float
    scores: dict[str, float]


def fit_arc(values: np.ndarray, min_range: float = MIN_RANGE) -> ArcFit:
    """Match a trajectory to the six shapes (Pearson correlation with each); a flat one
    (range below ``min_range``) fits none."""
    scores = {arc: _correlation(values, shape(arc, len(values))) for arc in SHAPES}
    if np.ptp(values) < min_range or any(np.isnan(r) for r in scores.values()):
        return ArcFit("", float("nan"), scores)
    arc = max(scores, key=lambda a: (scores[a], -list(SHAPES).index(a)))
    return ArcFit(arc, scores[arc], scores)


def story_arc(text: str, minimum: float = ARC_CONFIDENCE) -> ArcFit | None:
    """The arc of a story when it is clear enough (correlation at least ``minimum``), else
    None (too short, flat, or no shape fits well)."""
    values = trajectory(text)
    if values is None:
        return None
    fit = fit_arc(values)
    return fit if fit.arc and fit.correlation >= minimum else None


def content_words(text: str) -> list[str]:
    """Lower-case words of three letters or more that are not stopwords, in order."""
    words = _WORD.findall(text.lower().replace("’", "'"))
    return [w for w in words if len(w) >= 3 and w not in STOPWORDS]


# A line of narration: it starts with a capital letter and ends with "." or "!" (not a
# question, a trailing "..." or a fragment), quotes nobody and holds no link or address.
_NARRATION = re.compile(r"[A-Z][^\"“”]*[^.!?…\"“”][.!]")
_ADDRESS = re.compile(r"https?:|www\.|/\S|\d[:/]\d")


def is_narration(sentence: str) -> bool:
    """Could this sentence be a beat as a reader would write one: narration, not dialogue, a
    question, a fragment, a heading or a timestamp?"""
    s = sentence.strip()
    return (
        _NARRATION.fullmatch(s) is not None
        and not _ADDRESS.search(s)
        and 5 <= len(s.split()) <= MAX_BEAT_WORDS
        and len(content_words(s)) >= 2
    )


def _central(parts: list[str]) -> int:
    """The index of the sentence sharing the most content words with the others (the first on
    a tie). Lines of narration of a beat's length come first; then sentences of a beat's
    length; longer ones count only if nothing shorter is there."""
    bags = [set(content_words(p)) for p in parts]
    best, best_key = 0, None
    for i, bag in enumerate(bags):
        shared = sum(len(bag & other) for j, other in enumerate(bags) if j != i)
        fits = 1 if 3 <= len(parts[i].split()) <= MAX_BEAT_WORDS else 0
        key = (is_narration(parts[i]), fits, shared, len(bag))
        if best_key is None or key > best_key:
            best, best_key = i, key
    return best


def _beat_line(sentence: str) -> str:
    """The sentence as a beat: at most :data:`MAX_BEAT_WORDS` words and
    :data:`~storygen.request.MAX_BEAT` characters, "…" where it was cut."""
    words = " ".join(sentence.split()).split(" ")
    line = " ".join(words[:MAX_BEAT_WORDS])
    if len(line) > MAX_BEAT - 2:
        line = line[: MAX_BEAT - 2].rstrip()
    return line + (" …" if line != " ".join(words) else "")


def extract_beats(story: str) -> Plan | None:
    """The plan of a written story: a premise and one beat per part of :data:`BEAT_NAMES`, each
    a sentence of the story itself. None when the story has fewer sentences than parts."""
    parts = sentences(story)
    n = len(parts)
    if n < len(BEAT_NAMES):
        return None
    bounds = [round(k * n / len(BEAT_NAMES)) for k in range(len(BEAT_NAMES) + 1)]
    beats, chosen = [], set()
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        at = lo + _central(parts[lo:hi])
        chosen.add(at)
        beats.append(_beat_line(parts[at]))
    rest = [i for i in range(n) if i not in chosen] or list(range(n))
    premise = _beat_line(parts[rest[_central([parts[i] for i in rest])]])
    return Plan(premise, beats, "model")


@dataclass(frozen=True)
class Coverage:
    """Which beats a story holds (``found``, one per beat), where (sentence index or None),
    and the share of found neighbours that come in the given order."""

    found: tuple[bool, ...]
    positions: tuple[int | None, ...]
    coverage: float
    order: float

    def to_dict(self) -> dict:
        return {
            "found": list(self.found),
            "positions": list(self.positions),
            "coverage": self.coverage,
            "order": self.order,
        }


def beat_coverage(story: str, beats: list[str], found_at: float = BEAT_FOUND) -> Coverage:
    """Is each beat's content in ``story``, and in order?

    A beat is found where a sentence, or it and the next, first hold at least ``found_at`` of
    the beat's content words; its position is the one of the two holding more of them.
    ``order`` is the share of consecutive found beats whose positions do not go backwards (1.0
    when fewer than two are found).
    """
    parts = sentences(story)
    bags = [set(content_words(p)) for p in parts]
    windows = [bags[i] | (bags[i + 1] if i + 1 < len(bags) else set()) for i in range(len(bags))]
    found, positions = [], []
    for beat in beats:
        words = set(content_words(beat))
        at = None
        if words:
            for i, window in enumerate(windows):
                if len(words & window) >= found_at * len(words):
                    # of the window's two sentences, the one holding more of the beat
                    later = i + 1 < len(bags) and len(words & bags[i + 1]) > len(words & bags[i])
                    at = i + later
                    break
        found.append(at is not None)
        positions.append(at)
    seen = [p for p in positions if p is not None]
    pairs = list(zip(seen, seen[1:], strict=False))
    order = sum(a <= b for a, b in pairs) / len(pairs) if pairs else 1.0
    coverage = sum(found) / len(beats) if beats else float("nan")
    return Coverage(tuple(found), tuple(positions), coverage, order)
