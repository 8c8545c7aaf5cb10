"""Length and ending: is the requested length met, and does the story end?

- ``length_met``: the share of stories whose words are between two thirds and one and a half
  times the requested length's words (``storygen.request.LENGTHS``: short is about 350).
- ``length_ratio``: words written over words asked, averaged.
- ``ended``: the share of stories the model ended itself (it wrote its end of text), rather
  than the token budget or the repetition guard cutting them. (A cut story is trimmed back to
  its last sentence end when it is written, so whether a text ends at a sentence end says
  little; whether the model chose to end it says what a reader sees: an ending, or none.)
"""

from __future__ import annotations

from eval.metric import Figure, Item, Metric, mean_of
from storygen.request import LENGTHS

LOW, HIGH = 2 / 3, 3 / 2
"""A story meets its length when its words are within [LOW, HIGH] times the length's words."""


def length_scores(story: str, length: str, stop_reason: str | None) -> dict[str, float]:
    """One story's length and ending figures (``stop_reason``: its provenance's, when known)."""
    ratio = len(story.split()) / LENGTHS[length]
    out = {"length_ratio": ratio, "length_met": float(LOW <= ratio <= HIGH)}
    if stop_reason is not None:
        out["ended"] = float(stop_reason == "eos")
    return out


def _score(item: Item) -> dict[str, float]:
    stop = (item.provenance or {}).get("stop_reason")
    return length_scores(item.story or "", item.request.length, stop)


def _figures(rows: list[dict]) -> list[Figure]:
    return [Figure(k, mean_of(k), k) for k in ("length_met", "length_ratio", "ended")]


METRIC = Metric("length", "stories", _score, _figures)
