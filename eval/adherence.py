"""Personalization adherence: which requested fields a generated story actually follows.

The checks reuse the fine-tuning tagger, so "follows the request" means the same thing in
training data and in evaluation.
"""

from __future__ import annotations

import re
from collections import Counter

from eval.metric import Figure, Item, Metric, ratio_of
from storygen.lexicons import GENRE_WORDS, TONE_WORDS
from storygen.request import StoryRequest
from storygen.tagger import ending, lexicon_scores, lively, pov

_CONTENT = re.compile(r"[a-z]{4,}")
STOPWORDS = frozenset(
    "that this with from have were they their there them then when what "
    "which will would about into your been some just like than only also".split()
)


def _content_words(text: str) -> set[str]:
    return {w for w in _CONTENT.findall(text.lower()) if w not in STOPWORDS}


def _covered(phrase: str, story_words: set[str], share: float) -> bool:
    words = _content_words(phrase)
    return bool(words) and len(words & story_words) >= share * len(words)


FIELD_KINDS = ("character", "genre", "tone", "setting", "era", "plot_point", "ending", "pov")
"""The kinds of field :func:`check` judges (its keys' part before any ``:``)."""


def check(request: StoryRequest, story: str) -> dict[str, bool]:
    """For each field the request sets, whether the story follows it."""
    tokens = re.findall(r"[A-Za-z][A-Za-z'’-]*", story.lower())
    words, n_words = Counter(tokens), len(tokens)
    story_words = _content_words(story)
    # The tagger calls a lively story comedy and humorous, whatever its word lists say, so such
    # a story follows a request for either (training tags and this check mean the same).
    comic = lively(story, len(story.split()))
    out: dict[str, bool] = {}
    for c in request.characters:
        out[f"character:{c.name}"] = re.search(rf"\b{re.escape(c.name)}\b", story) is not None
    if request.genre:
        scores = lexicon_scores(words, n_words, GENRE_WORDS)
        out["genre"] = (comic and request.genre == "comedy") or (
            scores[request.genre] >= 2.0 and scores[request.genre] >= 0.5 * max(scores.values())
        )
    if request.tone:
        scores = lexicon_scores(words, n_words, TONE_WORDS)
        out["tone"] = (comic and request.tone == "humorous") or (
            scores[request.tone] >= 1.5 and scores[request.tone] >= 0.5 * max(scores.values())
        )
    if request.setting.place:
        out["setting"] = _covered(request.setting.place, story_words, 0.5)
    if request.setting.era:
        out["era"] = request.setting.era.lower() in story.lower() or _covered(
            request.setting.era, story_words, 0.5
        )
    for i, point in enumerate(request.plot_points):
        out[f"plot_point:{i}"] = _covered(point, story_words, 0.5)
    if request.ending:
        out["ending"] = ending(story) == request.ending
    if request.pov:
        out["pov"] = pov(story) == request.pov
    return out


def field_kind(key: str) -> str:
    return key.split(":", 1)[0]


def adherence(requests: list[StoryRequest], stories: list[str]) -> dict[str, float]:
    """Share of requested fields followed, overall and per kind of field."""
    hits: Counter = Counter()
    asked: Counter = Counter()
    for request, story in zip(requests, stories, strict=True):
        for key, ok in check(request, story).items():
            asked[field_kind(key)] += 1
            hits[field_kind(key)] += ok
    out = {"adherence": sum(hits.values()) / max(sum(asked.values()), 1)}
    out.update({f"adherence_{k}": hits[k] / asked[k] for k in sorted(asked)})
    return out


def _score(item: Item) -> dict[str, int]:
    """How many fields the request asks for and how many the story follows, also per kind."""
    out: Counter = Counter()
    for key, ok in check(item.request, item.story).items():
        kind = field_kind(key)
        out["adherence_asked"] += 1
        out["adherence_hits"] += ok
        out[f"adherence_asked:{kind}"] += 1
        out[f"adherence_hits:{kind}"] += ok
    return {"adherence_asked": 0, "adherence_hits": 0, **out}


def _figures(rows: list[dict]) -> list[Figure]:
    kinds = sorted(
        {k.split(":", 1)[1] for r in rows for k in r if k.startswith("adherence_asked:")}
    )
    return [
        Figure("adherence", ratio_of("adherence_hits", "adherence_asked"), "adherence_asked")
    ] + [
        Figure(
            f"adherence_{kind}",
            ratio_of(f"adherence_hits:{kind}", f"adherence_asked:{kind}"),
            f"adherence_asked:{kind}",
        )
        for kind in kinds
    ]


METRIC = Metric("adherence", "stories", _score, _figures)
