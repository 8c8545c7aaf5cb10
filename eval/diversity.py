"""Diversity and degeneration: distinct-n, self-BLEU and the repeated n-gram rate."""

from __future__ import annotations

import random
import re

from sacrebleu.metrics import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams

from eval.metric import JACKKNIFE, Figure, Item, Metric, mean_of

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams over all n-grams, pooled across the corpus (Li et al. 2016)."""
    return _distinct([tokens(text) for text in texts], n)


def _distinct(token_lists: list[list[str]], n: int) -> float:
    seen, total = set(), 0
    for t in token_lists:
        grams = list(zip(*(t[i:] for i in range(n))))
        seen.update(grams)
        total += len(grams)
    return len(seen) / total if total else 0.0


def repeated_ngram_rate(text: str, n: int = 4) -> float:
    """Share of a text's n-grams that already occurred earlier in the same text."""
    return _repeat_rate(tokens(text), n)


def _repeat_rate(t: list[str], n: int) -> float:
    grams = list(zip(*(t[i:] for i in range(n))))
    if not grams:
        return 0.0
    return 1 - len(set(grams)) / len(grams)


def self_bleu(texts: list[str], sample: int = 100, seed: int = 0) -> float:
    """Mean sentence BLEU of each text against all the others (Zhu et al. 2018); high means
    repetitive. Runs on a seeded sample of at most ``sample`` texts.

    Gives exactly ``mean(sacrebleu.sentence_bleu(t, others))`` but counts each text's n-grams
    once: for every n-gram it keeps the two largest counts across texts, so "the largest count
    among the others" is known without re-reading the other texts for every hypothesis.
    """
    texts = [t for t in texts if t.strip()]
    if len(texts) < 2:
        return 0.0
    if len(texts) > sample:
        texts = random.Random(seed).sample(texts, sample)
    metric = BLEU(effective_order=True)  # sacrebleu.sentence_bleu's settings
    grams, lens = [], []
    for text in texts:
        g, n = extract_all_word_ngrams(metric._preprocess_segment(text), 1, metric.max_ngram_order)
        grams.append(g)
        lens.append(n)
    top: dict[tuple, list] = {}  # n-gram -> [largest count, its text, second largest count]
    for i, g in enumerate(grams):
        for gram, c in g.items():
            t = top.get(gram)
            if t is None:
                top[gram] = [c, i, 0]
            elif c > t[0]:
                top[gram] = [c, i, t[0]]
            elif c > t[2]:
                t[2] = c
    scores = []
    for i, g in enumerate(grams):
        correct = [0] * metric.max_ngram_order
        total = correct[:]
        for gram, c in g.items():
            t = top[gram]
            total[len(gram) - 1] += c
            correct[len(gram) - 1] += min(c, t[2] if t[1] == i else t[0])
        ref_len = metric._get_closest_ref_len(lens[i], lens[:i] + lens[i + 1 :])
        stats = [lens[i], ref_len, *correct, *total]
        scores.append(metric._compute_score_from_stats(stats).score)
    return sum(scores) / len(scores)


def diversity(texts: list[str]) -> dict[str, float]:
    """All diversity metrics for a set of generated stories (each text tokenized once)."""
    unigrams, bigrams = set(), set()
    n1 = n2 = 0
    repeats = 0.0
    for text in texts:
        t = tokens(text)
        unigrams.update(t)
        pairs = list(zip(t, t[1:]))
        bigrams.update(pairs)
        n1, n2 = n1 + len(t), n2 + len(pairs)
        repeats += _repeat_rate(t, 4)
    return {
        "distinct_1": len(unigrams) / n1 if n1 else 0.0,
        "distinct_2": len(bigrams) / n2 if n2 else 0.0,
        "self_bleu": self_bleu(texts),
        "repeated_4gram_rate": repeats / max(len(texts), 1),
    }


def _score(item: Item) -> dict:
    t = tokens(item.story)
    # The tokens and the text stay in memory for the figures over the set of stories; the
    # saved rows keep the numbers (the stories themselves are in generations/).
    return {
        "repeated_4gram_rate": _repeat_rate(t, 4),
        "story_words": len(item.story.split()),
        "_tokens": t,
        "_story": item.story,
    }


def _figures(rows: list[dict]) -> list[Figure]:
    def distinct(n: int):
        return lambda rs: _distinct([r["_tokens"] for r in rs], n)

    return [
        Figure("distinct_1", distinct(1), "_tokens", JACKKNIFE),
        Figure("distinct_2", distinct(2), "_tokens", JACKKNIFE),
        # Over every story, not a sample: a sample redrawn for each left-out group would add
        # its own noise to the jackknife's spread.
        Figure(
            "self_bleu",
            lambda rs: self_bleu([r["_story"] for r in rs], len(rs)),
            "_story",
            JACKKNIFE,
        ),
        Figure("repeated_4gram_rate", mean_of("repeated_4gram_rate"), "repeated_4gram_rate"),
        Figure("mean_words", mean_of("story_words"), "story_words"),
    ]


METRIC = Metric("diversity", "stories", _score, _figures)
