"""Personalization adherence: which requested fields a story follows, by the validated judges.

Every field is judged by :mod:`storygen.judges`, each judge measured on held-out labelled
stories (``docs/judges/``). A field whose judge did not beat the majority baseline there is
*not measured*: it counts in no figure and is listed as such (``adherence_not_measured``),
never scored by a rule known to be wrong. A story the judges cannot read (empty, under 20
words, not English) counts its fields as not followed: it follows none of them.
"""

from __future__ import annotations

from collections import Counter

from eval.metric import Figure, Item, Metric, ratio_of
from storygen.judges import CLASS_FIELDS, PRESENCE_KINDS, asked, judges
from storygen.request import StoryRequest

FIELD_KINDS = (*CLASS_FIELDS, *PRESENCE_KINDS)
"""The kinds of field a request can set, as the judges name them (a key's part before
``:``): genre, tone, ending, pov, arc, place, era, character, trait, event."""


def field_kind(key: str) -> str:
    return key.split(":", 1)[0]


def measured_kinds() -> list[str]:
    """The kinds whose judge is measured (the others are reported as not measured)."""
    j = judges()
    return [k for k in FIELD_KINDS if j.measured(k)]


def judged_fields(request: StoryRequest) -> list[str]:
    """The keys of the fields ``request`` sets that a measured judge can judge."""
    return [key for key, kind, value, _ in asked(request) if judges().measures(kind, value)]


def check(request: StoryRequest, story: str) -> dict[str, bool]:
    """For each field the request sets whose judge is measured, whether the story follows it
    (a story that cannot be judged follows none)."""
    j = judges().judge(story, request)
    measures = judges().measures
    return {v.key: bool(v.followed) for v in j.verdicts if measures(v.kind, v.asked)}


def adherence(requests: list[StoryRequest], stories: list[str]) -> dict[str, float]:
    """Share of the measured requested fields followed, overall and per kind of field."""
    hits: Counter = Counter()
    asked: Counter = Counter()
    for request, story in zip(requests, stories, strict=True):
        for key, ok in check(request, story).items():
            asked[field_kind(key)] += 1
            hits[field_kind(key)] += ok
    out = {"adherence": sum(hits.values()) / max(sum(asked.values()), 1)}
    out.update({f"adherence_{k}": hits[k] / asked[k] for k in sorted(asked)})
    return out


def not_measured(request: StoryRequest) -> list[str]:
    """The kinds of field this request sets that no measured judge can judge (a story field
    counts when the value it asks for is not measured)."""
    return sorted(
        {kind for _, kind, value, _ in asked(request) if not judges().measures(kind, value)}
    )


def _score(item: Item) -> dict[str, int]:
    """How many measured fields the request asks for and how many the story follows, also
    per kind."""
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
