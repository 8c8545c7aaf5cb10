"""What the judges read off a story: its sentences, their embeddings, and a few counts.

A :class:`StoryView` is computed once per story (the sentence embeddings are the costly part)
and read by every judge: the story's own labels (genre, tone, ending, point of view, arc) and
each requested part (place, era, character, trait, event).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import cached_property

import numpy as np

from storygen.arcs import WINDOWS, valences
from storygen.lexicons import (
    FIRST,
    GENRE_WORDS,
    NEGATIVE,
    POSITIVE,
    SECOND,
    THIRD,
    TITLES,
    TONE_WORDS,
    TWIST,
    YEAR_RE,
)
from storygen.tagger import lexicon_scores, lively
from storygen.text import sentences

MIN_WORDS = 20
"""Fewer words than this cannot be judged."""
MAX_WORDS = 3000
"""Longer texts are judged on their first 2500 and last 500 words."""
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")
_CONTENT = re.compile(r"[a-z]{3,}")
STOP = frozenset(
    """the and for that this with from have were they their there them then when what which
    will would about into your been some just like than only also was are his her she him
    who whom has had not but all any can could did does one out over under very""".split()
)
_ENGLISH = frozenset("the and of to a in was he she it i you that his her is for on with".split())
_PERIOD_WORDS = re.compile(
    r"\b(medieval|middle ages|victorian|ancient|prehistoric|renaissance|future|futur\w*|"
    r"centur\w*|decade|era|age|[0-9]{2,4}s?|twenties|thirties|forties|fifties|sixties|"
    r"seventies|eighties|nineties|roman|viking|colonial|wartime|world war)\b"
)


class CannotJudge(ValueError):
    """A text the judges cannot read as a story; the message says why."""


def stem(word: str) -> str:
    """A crude stem, so that "stubborn" meets "stubbornly" and "storms" meets "storm"."""
    for suffix in ("ingly", "edly", "ness", "ing", "ly", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_stems(text: str) -> set[str]:
    return {stem(w) for w in _CONTENT.findall(text.lower()) if w not in STOP}


def check_text(text) -> str:
    """The text a judge reads: a string of at least :data:`MIN_WORDS` words that reads as
    English, cut to its first 2500 and last 500 words beyond :data:`MAX_WORDS`; else
    :class:`CannotJudge`."""
    if not isinstance(text, str):
        raise CannotJudge(f"a story is text, not {type(text).__name__}")
    # lone surrogates (from a broken decode) cannot be encoded for the models: replaced
    text = text.encode("utf-8", "replace").decode("utf-8")
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= MIN_WORDS and sum(c.isascii() for c in letters) < 0.5 * len(letters):
        raise CannotJudge("does not read as English")  # before counting words: CJK has no spaces
    words = text.split()
    if len(words) < MIN_WORDS:
        raise CannotJudge(f"too short to judge ({len(words)} words; at least {MIN_WORDS})")
    lower = [w.lower().strip(".,!?;:\"'“”") for w in words[:400]]
    if sum(w in _ENGLISH for w in lower) < 0.08 * len(lower):
        raise CannotJudge("does not read as English")
    if len(words) > MAX_WORDS:
        text = " ".join(words[:2500]) + "\n\n" + " ".join(words[-500:])
    return text


class StoryView:
    """A story as the judges read it; properties are computed on first use."""

    def __init__(self, text: str, embed=None):
        self.text = check_text(text)
        self._embed = embed
        self.sentences = sentences(self.text) or [self.text.strip()]
        self.tokens = _WORD.findall(self.text)
        self.lower_tokens = [t.lower() for t in self.tokens]
        self.counts = Counter(self.lower_tokens)
        self.n_words = len(self.text.split())

    @cached_property
    def embeddings(self) -> np.ndarray:
        """One unit vector per sentence."""
        if self._embed is None:
            from storygen.judges.embed import embedder

            self._embed = embedder()
        return self._embed(self.sentences)

    def part(self, start: float, end: float) -> np.ndarray:
        """The mean embedding of the sentences between two fractions of the story."""
        n = len(self.sentences)
        lo = min(int(start * n), n - 1)
        hi = max(lo + 1, int(math.ceil(end * n)))
        return self.embeddings[lo:hi].mean(0)

    @cached_property
    def stems(self) -> set[str]:
        return {stem(w) for w in self.lower_tokens}

    @cached_property
    def narration_counts(self) -> tuple[float, float, float]:
        """First-, second- and third-person pronouns per 100 words of narration (outside
        quotes)."""
        said = Counter(_WORD.findall(" ".join(_QUOTED.findall(self.text)).lower()))
        per = 100 / max(self.n_words, 1)
        return tuple(
            sum(max(self.counts[w] - said[w], 0) for w in lex) * per
            for lex in (FIRST, SECOND, THIRD)
        )

    @cached_property
    def trajectory(self) -> np.ndarray:
        """VADER valence of :data:`~storygen.arcs.WINDOWS` equal runs of sentences (zeros for
        a story with fewer sentences than runs)."""
        if len(self.sentences) < WINDOWS:
            return np.zeros(WINDOWS)
        runs = np.array_split(np.arange(len(self.sentences)), WINDOWS)
        return valences([" ".join(self.sentences[i] for i in run) for run in runs])

    @cached_property
    def protagonist_sentences(self) -> list[int]:
        """The sentences about the protagonist: for a story narrated in the first person,
        those where the narrator says I, me or my; else those naming the most mentioned
        character (the tagger's first name) or, if it names none, a he or she."""
        from storygen.tagger import characters

        first, _, third = self.narration_counts
        if first >= third:
            key = re.compile(r"\b(I|me|my|myself)\b")
        else:
            named = characters(self.text, limit=1)
            words = [w for w in named[0].name.split() if w not in TITLES] if named else []
            pattern = "|".join(map(re.escape, words)) or r"he|she|him|her"
            key = re.compile(rf"\b({pattern})\b", 0 if words else re.I)
        return [i for i, sentence in enumerate(self.sentences) if key.search(sentence)]

    @cached_property
    def protagonist_trajectory(self) -> np.ndarray | None:
        """VADER valence of :data:`~storygen.arcs.WINDOWS` equal runs of the protagonist's
        sentences: the hero's fortune, not the passage's mood (None with too few)."""
        from storygen.arcs import MIN_SENTENCES

        about = self.protagonist_sentences
        if len(about) < max(MIN_SENTENCES, WINDOWS):
            return None
        runs = np.array_split(np.array(about), WINDOWS)
        return valences([" ".join(self.sentences[i] for i in run) for run in runs])

    def surface(self) -> np.ndarray:
        """Counts that say how a text reads and ends, scaled to a few units."""
        text, per_k = self.text, 1000 / max(self.n_words, 1)
        tail = text.rstrip()[-300:]
        last = text.rstrip()[-1:]
        tail_words = [w.lower() for w in _WORD.findall(tail)]
        quotes = text.count('"') + text.count("“") + text.count("”")
        return np.array(
            [
                math.log1p(self.n_words) / 5,
                text.count("!") * per_k / 10,
                text.count("?") * per_k / 10,
                quotes * per_k / 40,
                float(lively(text, self.n_words)),
                float(last in ".!?…\"”'’)*"),  # a text cut off mid-sentence ends otherwise
                float(tail.rstrip("\"”' ").endswith(("?", "...", "…"))),
                float(any(t in tail.lower() for t in TWIST)),
                sum(w in POSITIVE for w in tail_words) / 5,
                sum(w in NEGATIVE for w in tail_words) / 5,
                float(bool(re.search(r"\b(to be continued|part \d|continued)\b", tail.lower()))),
            ]
        )

    def lexicons(self, which: str) -> np.ndarray:
        lex = GENRE_WORDS if which == "genre" else TONE_WORDS
        scores = lexicon_scores(self.counts, len(self.tokens), lex)
        return np.array([math.log1p(scores[k]) for k in lex])

    def classify_features(self, field: str) -> np.ndarray:
        """The feature vector the field's trained head reads."""
        first, second, third = self.narration_counts
        pov = np.array([first, second, third, math.log1p(first) - math.log1p(third)])
        if field == "pov":
            return pov
        if field == "genre":
            return np.concatenate([self.part(0, 1), self.lexicons("genre"), self.surface()])
        if field == "tone":
            return np.concatenate(
                [self.part(0, 1), self.part(0.8, 1), self.lexicons("tone"), self.surface()]
            )
        if field == "ending":
            return np.concatenate([self.part(0.8, 1), self.part(0, 1), self.surface()])
        if field == "arc":
            hero = self.protagonist_trajectory
            hero = np.zeros(WINDOWS) if hero is None else hero
            return np.concatenate(
                [self.part(0, 0.25), self.part(0.75, 1), self.trajectory, hero, self.surface()]
            )
        raise KeyError(field)

    # -- requested parts ------------------------------------------------------------------

    def similarity(self, phrase: str, among: list[int] | None = None) -> tuple[float, float]:
        """The best and the mean of the three best cosine similarities of ``phrase`` with the
        story's sentences (or those listed in ``among``), and of pairs of sentences in a row."""
        from storygen.judges.embed import embedder

        vec = (self._embed or embedder())([phrase])[0]
        emb = self.embeddings if among is None else self.embeddings[among]
        if not len(emb):
            return 0.0, 0.0
        pairs = emb[:-1] + emb[1:] if len(emb) > 1 else emb
        pairs = pairs / np.maximum(np.linalg.norm(pairs, axis=1, keepdims=True), 1e-12)
        sims = np.concatenate([emb @ vec, pairs @ vec])
        top = np.sort(sims)[-3:]
        return float(top[-1]), float(top.mean())

    def coverage(self, phrase: str) -> float:
        """The share of the phrase's content words (stemmed) found in the story."""
        words = content_stems(phrase)
        return len(words & self.stems) / len(words) if words else 0.0

    def mentions(self, name: str) -> list[int]:
        """The sentences that name a character: any word of the name other than a title
        (case as written), or for a role ("the farmer"), its last content word."""
        words = [w for w in _WORD.findall(name) if w not in TITLES and w.lower() not in STOP]
        if not words:
            return []
        if name[:1].islower() or name.lower().startswith(("the ", "a ", "an ")):
            keys = [re.compile(rf"\b{re.escape(words[-1].lower())}", re.I)]
        else:
            keys = [re.compile(rf"\b{re.escape(w)}\b") for w in words if w[:1].isupper()]
            keys = keys or [re.compile(rf"\b{re.escape(w)}\b", re.I) for w in words]
        return [i for i, s in enumerate(self.sentences) if any(k.search(s) for k in keys)]

    def presence_features(self, kind: str, phrase: str, name: str = "") -> np.ndarray:
        """Features of one requested part: ``kind`` is place, era, character, trait or event;
        a trait's ``name`` is its character's."""
        best, top3 = self.similarity(phrase)
        cover = self.coverage(phrase)
        if kind == "character":
            seen = self.mentions(phrase)
            full = float(phrase.lower() in self.text.lower())
            return np.array([math.log1p(len(seen)), full, float(bool(seen)), cover, best, top3])
        if kind == "trait":
            seen = self.mentions(name)
            near_best, near_top = self.similarity(f"{name} is {phrase}.", seen or None)
            trait = stem(phrase.lower().split()[-1]) if phrase.split() else ""
            near = sum(
                trait in {stem(w.lower()) for w in _WORD.findall(self.sentences[i])} for i in seen
            )
            return np.array(
                [
                    float(bool(seen)),
                    math.log1p(near),
                    float(trait in self.stems),
                    near_best if seen else 0.0,
                    near_top if seen else 0.0,
                    best,
                ]
            )
        if kind == "era":
            years = YEAR_RE.findall(self.text.lower())
            asked = YEAR_RE.findall(phrase.lower())
            same_year = float(any(a[:3] == y[:3] for a in asked for y in years))
            periods = bool(_PERIOD_WORDS.search(self.text.lower()))
            return np.array([cover, best, top3, float(bool(years)), same_year, float(periods)])
        return np.array([cover, best, top3, float(cover >= 0.5), float(cover == 1.0)])
