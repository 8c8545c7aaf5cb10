"""Deterministic metadata tagger: derives the story-request fields from a story's own text.

Lexicon and pattern based, so it is offline, fast (tens of thousands of stories a minute) and
gives the same answer every time. Fine-tuning uses it to turn WritingPrompts pairs into tagged
requests; evaluation reuses it to check whether a generated story follows its request.
``python -m finetune tagger-accuracy`` measures it against a hand-labelled set. Its word lists
are in :mod:`storygen.lexicons`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from storygen.arcs import story_arc
from storygen.lexicons import (
    FIRST,
    GENRE_PROMPT_TAGS,
    GENRE_WORDS,
    MULTI_PLACES,
    NEGATIVE,
    NOT_NAMES,
    PERIOD_RE,
    PERIODS,
    PLACE_IDIOMS,
    POSITIVE,
    SECOND,
    SINGLE_PLACES,
    THIRD,
    TONE_WORDS,
    TRAITS,
    TWIST,
    YEAR_RE,
)
from storygen.request import LENGTHS, Character, Setting, StoryRequest

_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")


_VOCABULARIES: dict[int, tuple[dict, dict[str, list[str]]]] = {}


@dataclass
class Tags:
    """The request fields the tagger found in a story, with the evidence counts behind them."""

    request: StoryRequest
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


def _best(scores: dict[str, float], minimum: float) -> str:
    label, score = max(scores.items(), key=lambda kv: (kv[1], kv[0]))
    return label if score >= minimum else ""


def lexicon_scores(
    counts: Counter, n_words: int, lexicons: dict[str, frozenset[str]]
) -> dict[str, float]:
    """Hits per 1000 words of each lexicon, from lower-cased word counts."""
    cached = _VOCABULARIES.get(id(lexicons))
    if cached is None or cached[0] is not lexicons:
        vocabulary: dict[str, list[str]] = {}
        for label, lex in lexicons.items():
            for w in lex:
                vocabulary.setdefault(w, []).append(label)
        # Keeping ``lexicons`` alive in the cache means its id is never reused.
        _VOCABULARIES[id(lexicons)] = cached = (lexicons, vocabulary)
    vocabulary = cached[1]
    hits = dict.fromkeys(lexicons, 0)
    for w in counts.keys() & vocabulary.keys():  # one set intersection, not one per lexicon
        for label in vocabulary[w]:
            hits[label] += counts[w]
    per_k = 1000 / max(n_words, 1)
    return {k: v * per_k for k, v in hits.items()}


def lower_counts(text: str, lowered: list[str]) -> Counter:
    """Counts of the lower-cased words of ``text``, from its lower-cased tokens.

    Lower-casing the tokens equals tokenizing the lower-cased text except for the only two
    characters whose lower case adds ASCII letters (U+0130, U+212A); those texts take the
    slow path.
    """
    if "\u0130" in text or "\u212a" in text:
        return Counter(_WORD.findall(text.lower()))
    return Counter(lowered)


def places_in(words: Counter, lower_text: str) -> Counter:
    """How often each known place (singular or plural) is mentioned."""
    found = Counter(
        {p: words[p] + words[p + "s"] for p in SINGLE_PLACES if p in words or p + "s" in words}
    )
    for p in MULTI_PLACES:
        if p in lower_text:
            found[p] = lower_text.count(p)
    for p, idioms in PLACE_IDIOMS.items():  # an oath is not a setting
        if found.get(p):
            found[p] -= sum(lower_text.count(i) for i in idioms)
            if found[p] <= 0:
                del found[p]
    return found


def length_bucket(n_words: int) -> str:
    """The length bucket whose budget is nearest to ``n_words``."""
    return min(LENGTHS, key=lambda k: abs(LENGTHS[k] - n_words))


def _is_name(token: str) -> bool:
    """A capitalised token that can be a name (the caller has checked the capital)."""
    return (
        token not in NOT_NAMES
        and len(token) > 1
        and not token.isupper()
        and "'" not in token
        and "’" not in token
    )


def characters(
    text: str,
    limit: int = 3,
    tokens: list[str] | None = None,
    lowered: list[str] | None = None,
) -> list[Character]:
    """Recurring capitalised names (not sentence-initial function words) and nearby traits.

    ``tokens`` (``_WORD.findall(text)``) and ``lowered`` (those tokens lower-cased) save work
    when the caller has them.
    """
    tokens = tokens if tokens is not None else _WORD.findall(text)
    # Tokens start with an ASCII letter, so the capitalised ones are exactly those below "a".
    counts = Counter(filter("a".__gt__, tokens))
    # Most frequent first; ties keep the order of first mention (as Counter.most_common does).
    names = sorted(
        (t for t, c in counts.items() if c >= 2 and _is_name(t)),
        key=counts.__getitem__,
        reverse=True,
    )[:limit]
    if names and lowered is None:
        lowered = list(map(str.lower, tokens))
    out = []
    for name in names:
        near: Counter[str] = Counter()
        i = tokens.index(name)
        while True:
            near.update(w for w in lowered[max(0, i - 4) : i + 5] if w in TRAITS)
            try:
                i = tokens.index(name, i + 1)
            except ValueError:
                break
        out.append(Character(name, [w for w, _ in near.most_common(2)]))
    return out


def ending(text: str) -> str:
    """Ending type from the last fifth of the story: twist, open, happy, sad or bittersweet."""
    tail = text[-max(400, len(text) // 5) :]
    last = tail.strip()[-200:]
    lower = tail.lower()
    if any(t in lower for t in TWIST):
        return "twist"
    if last.rstrip("\"”' ").endswith(("?", "...", "…")):
        return "open"
    words = list(map(str.lower, _WORD.findall(tail)))
    pos = sum(map(POSITIVE.__contains__, words))
    neg = sum(map(NEGATIVE.__contains__, words))
    if pos >= 2 and neg >= 2:
        return "bittersweet"
    if pos > neg:
        return "happy"
    if neg > pos:
        return "sad"
    return "open"


def pov(text: str, words: Counter | None = None) -> str:
    """Point of view from pronoun counts in the narration (the text outside quotes).

    ``words`` (lower-cased word counts of the whole text) saves a tokenization: quote marks
    never belong to a word, so narration counts are whole-text counts minus quoted counts.
    """
    if words is None:
        words = lower_counts(text, list(map(str.lower, _WORD.findall(text))))
    quoted = _QUOTED.findall(text)
    said = Counter(_WORD.findall(" ".join(quoted).lower())) if quoted else Counter()

    def narrated(lexicon: frozenset[str]) -> int:
        return sum(words[w] - said[w] for w in lexicon)

    first = narrated(FIRST) * 1.5  # narrators say "I" less often than "he"
    second = narrated(SECOND)
    third = narrated(THIRD)
    if second > 2 * max(first, third):
        return "second person"
    return "first person" if first >= third else "third person"


def era_of(text: str) -> str:
    """The first era named in ``text`` (a year, a decade, "medieval", ...), or ""."""
    lower = text.lower()
    found = [YEAR_RE.search(lower)]
    if any(p in lower for p in PERIODS) or "twenties" in lower or "world war" in lower:
        found.append(PERIOD_RE.search(lower))
    first = min((m for m in found if m), key=lambda m: m.start(), default=None)
    return first.group(0) if first else ""


def tag_story(
    story: str, prompt: str = "", prompt_tags: list[str] | None = None, n_words: int | None = None
) -> Tags:
    """Derive a :class:`StoryRequest` describing ``story`` (and its WritingPrompts prompt).

    ``n_words`` is ``len(story.split())`` when the caller already knows it.
    """
    tokens = _WORD.findall(story)
    lowered = list(map(str.lower, tokens))
    words = lower_counts(story, lowered)
    n_tokens = len(tokens)
    prompt_words = Counter(_WORD.findall(prompt.lower()))
    # The prompt says what the story is about: its words count three times.
    n_all = n_tokens + 3 * sum(prompt_words.values())
    genre_scores = lexicon_scores(words, n_all, GENRE_WORDS)
    for k, v in lexicon_scores(prompt_words, n_all, GENRE_WORDS).items():
        genre_scores[k] += 3 * v
    for tag in prompt_tags or []:
        if tag in GENRE_PROMPT_TAGS:
            genre_scores[GENRE_PROMPT_TAGS[tag]] += 5
    tone_scores = lexicon_scores(words, n_tokens, TONE_WORDS)
    lower = story.lower()
    places = places_in(words, lower)
    # Ties go to the place mentioned first, so the answer never depends on set order.
    place = max(places, key=lambda p: (places[p], -lower.find(p))) if places else ""
    request = StoryRequest(
        characters=characters(story, tokens=tokens, lowered=lowered),
        setting=Setting(place, era_of(story + " " + prompt)),
        genre=_best(genre_scores, 4.0),
        tone=_best(tone_scores, 3.0),
        ending=ending(story),
        pov=pov(story, words),
        length=length_bucket(len(story.split()) if n_words is None else n_words),
        prompt=prompt,
    )
    scores = {"genre": genre_scores, "tone": tone_scores}
    fit = story_arc(story)  # None when no shape fits clearly: the field stays empty
    if fit is not None:
        request.arc = fit.arc
        scores["arc"] = fit.scores
    return Tags(request, scores)
