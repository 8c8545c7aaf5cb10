"""The rule candidates: the tagger's labels and the old adherence checks, as judges."""

from __future__ import annotations

import re

from storygen.judges.features import StoryView, content_stems

UNLABELLED = "(none)"
"""What a rule answers when its evidence is below its threshold (never a reader's label)."""


def label(view: StoryView, field: str) -> str:
    """The tagger's answer for one of the story's own fields."""
    from storygen.arcs import story_arc
    from storygen.tagger import ending, pov, tag_story

    if field == "ending":
        return ending(view.text)
    if field == "pov":
        return pov(view.text)
    if field == "arc":
        fit = story_arc(view.text)
        return fit.arc if fit is not None else "unclear"
    return getattr(tag_story(view.text).request, field) or UNLABELLED


def protagonist_arc(view: StoryView) -> str:
    """The arc of the protagonist's fortune: the six shapes fitted to the valence of the
    sentences about the protagonist (:attr:`StoryView.protagonist_trajectory`), as the tagger
    fits the whole story's; ``unclear`` when too short, flat or no shape fits well."""
    from storygen.arcs import ARC_CONFIDENCE, fit_arc

    values = view.protagonist_trajectory
    if values is None:
        return "unclear"
    fit = fit_arc(values)
    return fit.arc if fit.arc and fit.correlation >= ARC_CONFIDENCE else "unclear"


def _covered(phrase: str, view: StoryView, share: float = 0.5) -> bool:
    words = content_stems(phrase)
    return bool(words) and len(words & view.stems) >= share * len(words)


def present(view: StoryView, kind: str, phrase: str, name: str = "") -> bool:
    """The old adherence check of each kind: the character's name as written, half of the
    place's, era's or event's content words (or the era as written). A trait, which it never
    checked: its word in a sentence that names the character."""
    text = view.text
    if kind == "character":
        return re.search(rf"\b{re.escape(phrase)}\b", text) is not None
    if kind == "trait":
        return any(phrase.lower() in view.sentences[i].lower() for i in view.mentions(name))
    if kind == "era" and phrase.lower() in text.lower():
        return True
    return _covered(phrase, view)
