"""Judges: does a story follow its request? One judge per field, each measured on held-out
labelled stories (``docs/judges/``).

    >>> from storygen.judges import judge
    >>> judgement = judge(story_text, request)      # a StoryRequest or its dict
    >>> judgement.adherence, [v.to_dict() for v in judgement.verdicts]

The story's own fields (genre, tone, ending, point of view, arc) are labelled and compared with
what was asked; each requested part (place, era, each character, each of its traits, each
event) is judged present or not. Which judge answers each field, and whether it is *measured*
(it beat the majority baseline on held-out stories with an interval excluding zero), is data:
``heads.json``, written by ``python -m finetune judges``. A field whose judge is not measured
is answered ``followed=None`` with the reason: never a number. A text that cannot be judged
(empty, under 20 words, not English) gets a judgement that says so, never an exception.
Judging changes no stored data.

Everything here runs on the CPU without torch (the sentence embeddings run in numpy).
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from storygen.judges import rules
from storygen.judges.features import CannotJudge, StoryView
from storygen.request import RequestError, StoryRequest

HEADS = Path(__file__).resolve().parent / "heads.json"
CLASS_FIELDS = ("genre", "tone", "ending", "pov", "arc")
PRESENCE_KINDS = ("place", "era", "character", "trait", "event")
REQUEST_FIELD = {"genre": "genre", "tone": "tone", "ending": "ending", "pov": "pov", "arc": "arc"}


@dataclass
class Verdict:
    """One requested field, judged."""

    key: str
    """``genre``, ``place``, ``character:Mara``, ``trait:Mara:stubborn``, ``event:0`` ..."""
    kind: str
    """The field's kind: a story field (genre, tone, ending, pov, arc) or a part (place, era,
    character, trait, event)."""
    asked: str
    found: str | None
    """What the judge read: the story's label for a story field, else None."""
    followed: bool | None
    """None when the field's judge is not measured, or the story cannot be judged."""
    probability: float | None = None
    """The judge's probability that the field is followed (trained heads only)."""
    measured: bool = False
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Judgement:
    verdicts: list[Verdict] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    """The story's own fields as the measured judges read them."""
    cannot_judge: str = ""
    """Why the text could not be judged ("" when it was)."""

    @property
    def adherence(self) -> float | None:
        """The share of measured fields the story follows (None when none is measured)."""
        judged = [v.followed for v in self.verdicts if v.followed is not None]
        return sum(judged) / len(judged) if judged else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "adherence": self.adherence,
            "labels": dict(self.labels),
            "cannot_judge": self.cannot_judge,
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


def apply_head(head: dict, x: np.ndarray) -> dict[Any, float]:
    """A logistic head (``heads.json``) applied to one feature vector: class -> probability."""
    z = (x - np.asarray(head["mean"])) / np.asarray(head["scale"])
    coef, intercept = np.asarray(head["coef"]), np.asarray(head["intercept"])
    logits = coef @ z + intercept
    classes = head["classes"]
    if len(classes) == 2 and len(logits) == 1:  # binary: one logit for the second class
        p = 1 / (1 + math.exp(-float(logits[0])))
        return {classes[0]: 1 - p, classes[1]: p}
    e = np.exp(logits - logits.max())
    return dict(zip(classes, (e / e.sum()).tolist(), strict=True))


class Judges:
    """The chosen judge of every field, loaded once (``heads.json``)."""

    def __init__(self, heads: Path | dict = HEADS, embed=None):
        data = heads if isinstance(heads, dict) else json.loads(Path(heads).read_text())
        self.fields: dict[str, dict] = data["fields"]
        self.embed = embed

    def view(self, story) -> StoryView:
        return StoryView(story, self.embed)

    def measured(self, name: str) -> bool:
        """Whether field ``name``'s judge beat the majority baseline on held-out stories."""
        return bool(self.fields.get(name, {}).get("measured"))

    def measures(self, kind: str, value: str = "") -> bool:
        """Whether a request's ``value`` of field ``kind`` is judged by a measured judge: for
        a story field, the field's judge and the binary question "is the story ``value``?"
        (``measured_values``) both beat the majority answer on held-out stories."""
        if not self.measured(kind):
            return False
        values = self.fields[kind].get("measured_values")
        return kind not in CLASS_FIELDS or values is None or not value or value in values

    def label(self, view: StoryView, name: str) -> tuple[str, dict | None]:
        """The story's own field ``name``: (label, class probabilities or None)."""
        spec = self.fields[name]
        if spec["judge"] == "head":
            probs = apply_head(spec["head"], view.classify_features(name))
            return max(probs, key=probs.get), probs
        if spec["judge"] == "lm":
            return _lm(view).classify(name), None
        if spec["judge"] == "protagonist":
            return rules.protagonist_arc(view), None
        return rules.label(view, name), None

    def present(
        self, view: StoryView, kind: str, phrase: str, name: str = ""
    ) -> tuple[bool, float | None]:
        """Whether a requested part is in the story: (answer, probability or None)."""
        spec = self.fields[kind]
        if spec["judge"] == "head":
            probs = apply_head(spec["head"], view.presence_features(kind, phrase, name))
            p = float(probs.get(True, 0.0))
            return p >= 0.5, p
        if spec["judge"] == "lm":
            return _lm(view).yes_no(kind, phrase, name) > 0, None
        return rules.present(view, kind, phrase, name), None

    def labels(self, story) -> dict[str, str]:
        """The story's own fields, where the value read is a measured one (for tagging
        training data)."""
        view = self.view(story)
        out = {f: self.label(view, f)[0] for f in CLASS_FIELDS if self.measured(f)}
        return {f: v for f, v in out.items() if self.measures(f, v)}

    def judge(self, story, request: StoryRequest | dict) -> Judgement:
        """Every field ``request`` sets, judged on ``story``."""
        if isinstance(request, dict):
            request = StoryRequest.from_dict(request)
        elif not isinstance(request, StoryRequest):
            raise RequestError(
                {"request": f"expected a story request, not {type(request).__name__}"}
            )
        asked_fields = asked(request)
        try:
            view = self.view(story)
        except CannotJudge as exc:
            return Judgement(
                [
                    Verdict(k, kind, a, None, None, note=f"cannot judge: {exc}")
                    for k, kind, a, _ in asked_fields
                ],
                cannot_judge=str(exc),
            )
        out, labels = [], {}
        for key, kind, value, name in asked_fields:
            if not self.measures(kind, value):
                why = (
                    "its judge did not beat the majority baseline on held-out stories"
                    if not self.measured(kind)
                    else f"the judge's answer to 'is the story {value}?' did not beat the "
                    "majority answer on held-out stories"
                )
                out.append(Verdict(key, kind, value, None, None, note=f"not measured: {why}"))
                continue
            if kind in CLASS_FIELDS:
                found, probs = self.label(view, kind)
                labels[kind] = found
                p = None if probs is None else float(probs.get(value, 0.0))
                out.append(Verdict(key, kind, value, found, found == value, p, True))
            else:
                ok, p = self.present(view, kind, value, name)
                out.append(Verdict(key, kind, value, None, ok, p, True))
        return Judgement(out, labels)


def asked(request: StoryRequest) -> list[tuple[str, str, str, str]]:
    """(key, kind, asked value, character name) for each field the request sets."""
    out = []
    for f in CLASS_FIELDS:
        if getattr(request, f):
            out.append((f, f, getattr(request, f), ""))
    if request.setting.place:
        out.append(("place", "place", request.setting.place, ""))
    if request.setting.era:
        out.append(("era", "era", request.setting.era, ""))
    seen: Counter = Counter()
    for c in request.characters:
        seen[c.name] += 1  # two characters of one name keep two keys
        who = c.name if seen[c.name] == 1 else f"{c.name} ({seen[c.name]})"
        out.append((f"character:{who}", "character", c.name, ""))
        out += [(f"trait:{who}:{t}", "trait", t, c.name) for t in c.traits]
    out += [(f"event:{i}", "event", p, "") for i, p in enumerate(request.plot_points)]
    return out


_lock = threading.Lock()


@cache
def _shared() -> Judges:
    return Judges()


def judges() -> Judges:
    """The judges of this process, loaded on first use."""
    with _lock:
        return _shared()


def judge(story, request: StoryRequest | dict) -> Judgement:
    """Judge ``story`` against ``request`` with the committed judges."""
    return judges().judge(story, request)


_lm_judge = None


def _lm(view: StoryView):
    """The zero-shot LM judge, reading this story (loaded on first use)."""
    global _lm_judge
    from storygen.judges.lm import LMJudge

    if _lm_judge is None:
        _lm_judge = LMJudge()
    if getattr(_lm_judge, "_read", None) is not view:
        _lm_judge.read(view.text)
        _lm_judge._read = view
    return _lm_judge


__all__ = ["asked", "CannotJudge", "Judgement", "Judges", "Verdict", "judge", "judges"]
