"""The preprocessing hot paths equal their straightforward definitions.

At 300K stories, cleaning and tagging are written for speed (patterns that start with a
literal, guards, shared tokenizations). Each test here states the plain version of a function
and checks the fast one against it on random strings built from the characters that matter.
"""

import csv
import random
import re
import unicodedata
from collections import Counter

import pytest

from finetune.clean import _attach_quotes, _close_emphasis, detokenize, truncate_words
from finetune.data import DataError, iter_pairs
from storygen.prompt_format import escape, unescape
from storygen.request import RequestError, Setting, StoryRequest, validate
from storygen.tagger import (
    _WORD,
    GENRE_WORDS,
    NOT_NAMES,
    TITLES,
    TONE_WORDS,
    TRAITS,
    characters,
    era_of,
    lexicon_scores,
    pov,
)

PIECES = [
    "a", "b", "do", "n't", "N'T", "'s", "'S", "'re", "'ve", "'ll", "'d", "'m", "’s", "’", "'",
    "n’t", "s", "t", "re", "ll", " ", " ", "  ", "``", "''", "“", "”", ".", ",", "!", "?", "(",
    ")", "[", "$", "#", "…", "...", "\t", "x1", "_", "-", "é", "İ", "\n", "‘", "gon", "Wan", "na",
    "NA", "got", "ta", "can", "not", "Not", "*", "**", "—", "is", "' ",
]  # fmt: skip


def random_texts(n, pieces=PIECES, seed=0, longest=12):
    rng = random.Random(seed)
    for _ in range(n):
        yield "".join(
            rng.choice(pieces) + rng.choice(("", " ")) for _ in range(rng.randint(1, longest))
        )


def _joined(m):
    return m.group(0).replace(" ", "")


def plain_detokenize(text):
    text = re.sub(r"(``|“) *", "“", text)
    text = re.sub(r" *(''|”)", "”", text)
    text = re.sub(
        r"(?<=\w) (n't|'s|'re|'ve|'ll|'d|'m|’s|’re|’ve|’ll|’d|’m|n’t)\b", r"\1", text, flags=re.I
    )
    text = re.sub(r"(?<=\w) ?([’']) ?(?=(?:s|t|re|ve|ll|d|m)\b)", r"\1", text)
    text = text.replace(" ’ ", "’ ").replace("’", "'").replace("‘", "'")
    text = "\n".join(_attach_quotes(line) for line in text.split("\n"))
    text = re.sub(r"\b(gon|wan) na\b|\b(got) ta\b|\b(can) not\b", _joined, text, flags=re.I)
    text = re.sub(r" +(?=[.,!?;:%)\]}…])", "", text)
    text = re.sub(r"([(\[{$#]) +", r"\1", text)
    text = text.replace("“", '"').replace("”", '"')
    text = re.sub(r"[ \t]*—[ \t]*", "—", text)
    text = "\n".join(_close_emphasis(line) for line in text.split("\n"))
    return re.sub(r"[ \t]+", " ", text).strip()


def test_detokenize_equals_the_plain_patterns():
    for text in random_texts(30_000):
        assert detokenize(text) == plain_detokenize(text), repr(text)


def test_detokenize_joins_chained_contractions():
    assert detokenize("you should n't 've") == "you shouldn't've"


def test_truncation_equals_the_word_list_version():
    def plain(text, budget):
        words = list(re.finditer(r"\S+", text))
        if len(words) <= budget:
            return text
        cut = text[: words[budget - 1].end()]
        ends = list(re.finditer(r"[.!?…][\"'”’)\]*]*(?=\s|$)", cut))
        return cut[: ends[-1].end()] if ends else cut

    pieces = ["One", "two.", "three!", " ", "\n\n", "  ", "four?”", "five…", "\t"]
    for text in random_texts(3_000, pieces, seed=1, longest=30):
        for budget in (1, 3, 7):
            assert truncate_words(text, budget) == plain(text, budget), (text, budget)


def test_era_equals_one_case_insensitive_pattern():
    pattern = re.compile(
        r"\b(1[0-9]{3}s?|20[0-9]{2}s?|2[1-9][0-9]{2}|medieval|victorian|ancient|prehistoric|"
        r"renaissance|future|the twenties|world war (?:i|ii|one|two|1|2))\b",
        re.I,
    )
    pieces = [
        "1", "2", "0", "9", "3", "s", "S", "x", " ", "_", ".", "-", "é", "the twenties",
        "World War II", "world war one", "Future", "futures", "MEDIEVAL", "19", "20", "21",
    ]  # fmt: skip
    for text in random_texts(30_000, pieces, seed=2, longest=8):
        m = pattern.search(text)
        assert era_of(text) == (m.group(1).lower() if m else ""), repr(text)


WORDS = [
    "Mara", "Mara", "Jonah", "Walters", "Captain", "Unlike", "unlike", "Blood", "blood", "!",
    "?", "\n", "The", "I", "me", "my", "you", "he", "she", "they", "brave",
    "kind", "dragon", "magic", "laughed", "hope", "tears", "OK", "Don't", "x-Ray", "'tis",
    '"', '"', "“", "”", " ", " ", ".", ",", "İ",
]  # fmt: skip


def test_lexicon_scores_equal_the_per_lexicon_sum():
    for text in random_texts(2_000, WORDS, seed=3, longest=40):
        counts = Counter(_WORD.findall(text.lower()))
        for lexicons in (GENRE_WORDS, TONE_WORDS):
            per_k = 1000 / max(len(counts), 1)
            plain = {k: sum(counts[w] for w in lex) * per_k for k, lex in lexicons.items()}
            assert lexicon_scores(counts, len(counts), lexicons) == plain


def test_characters_equal_the_plain_rules():
    def name_like(t):
        return (
            t[0].isupper()
            and t not in NOT_NAMES
            and len(t) > 1
            and not t.isupper()
            and "'" not in t
            and "’" not in t
        )

    def plain(text, limit=3):
        found = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
        tokens = [t for t, _, _ in found]
        lower = {t for t in tokens if t[0].islower()}
        counts = Counter(t for t in tokens if t[0].isupper())

        def mid_sentence(word):
            return any(
                t == word
                and text[:a].rstrip(" \t")
                and text[:a].rstrip(" \t")[-1] not in '.!?…"“”\n'
                for t, a, _ in found
            )

        def partner(name, side):
            together = Counter()
            for (t1, _, e1), (t2, a2, _) in zip(found, found[1:]):
                if text[e1:a2] != " ":
                    continue
                if side == "after" and t1 == name and t2[0].isupper():
                    together[t2] += 1
                if side == "before" and t2 == name and t1[0].isupper():
                    together[t1] += 1
            for other, n in together.most_common():
                if (
                    other != name
                    and name_like(other)
                    and other.lower() not in lower
                    and other not in TITLES
                    and 2 * n >= counts[other]
                    and mid_sentence(other)
                ):
                    return other, n
            return None

        names = [
            t
            for t, c in counts.items()
            if c >= 2 and name_like(t) and t.lower() not in lower and t not in TITLES
        ]
        full, mentions, joined = {}, {}, set()
        for name in names:
            if name in joined:
                continue
            full[name], mentions[name] = name, counts[name]
            for side in ("after", "before"):
                pair = partner(name, side)
                if pair and pair[0] not in joined:
                    joined.add(pair[0])
                    mentions[name] += counts[pair[0]] - pair[1]
                    full[name] = f"{name} {pair[0]}" if side == "after" else f"{pair[0]} {name}"
                    break
        ranked = sorted((n for n in full if n not in joined), key=lambda n: -mentions[n])
        out = []
        for name in ranked[:limit]:
            near = Counter()
            for i, t in enumerate(tokens):
                if t == name:
                    window = (w.lower() for w in tokens[max(0, i - 4) : i + 5])
                    near.update(w for w in window if w in TRAITS)
            out.append((full[name], [w for w, _ in near.most_common(2)]))
        return out

    for text in random_texts(3_000, WORDS, seed=4, longest=40):
        assert [(c.name, c.traits) for c in characters(text)] == plain(text), repr(text)


def test_pov_equals_counting_the_narration_alone():
    def plain(text):
        narration = re.sub(r"\"[^\"]*\"|“[^”]*”", " ", text)
        counts = Counter(_WORD.findall(narration.lower()))
        first = sum(counts[w] for w in ("i", "me", "my", "mine", "myself")) * 1.5
        second = sum(counts[w] for w in ("you", "your", "yours", "yourself"))
        third = sum(
            counts[w] for w in "he she him her his hers himself herself they them their".split()
        )
        if second > 2 * max(first, third):
            return "second person"
        return "first person" if first >= third else "third person"

    for text in random_texts(5_000, WORDS, seed=5, longest=40):
        assert pov(text) == plain(text), repr(text)


def test_escape_equals_the_per_character_rule():
    for text in random_texts(5_000, list("ab\\;,()|é\n "), seed=6):
        assert escape(text) == "".join("\\" + c if c in "\\;,()|" else c for c in text)
        assert unescape(escape(text)) == text


def test_every_control_character_is_refused_and_nothing_else():
    """The regex class in request.py is Unicode categories Cc and Cs (a tab is allowed)."""
    for code in range(0x10000):
        c = chr(code)
        is_control = unicodedata.category(c) in ("Cc", "Cs") and c != "\t"
        try:
            validate(StoryRequest(setting=Setting(place="a" + c + "b")))
            refused = False
        except RequestError:
            refused = True
        assert refused == is_control, hex(code)


def test_csv_reader_equals_the_csv_module(tmp_path):
    path = tmp_path / "tricky.csv"
    rows = [
        ["row_id", "prompt", "story", "completion"],
        ["7", "[ WP ] a, b", 'He said "hi" ,\nthen\n\nleft .', ""],
        ["", "[ SP ] empty id", "x", ""],
        ["9", "", "", ""],
        ["10", "ünïcödé ’", "“quoted” \r\n lines", "y"],
    ]
    with path.open("w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f).writerows(rows)
    got = [(p.prompt, p.story, p.source_id) for p in iter_pairs(path)]
    assert got == [
        ("[ WP ] a, b", 'He said "hi" ,\nthen\n\nleft .', "7"),
        ("[ SP ] empty id", "x", "tricky.csv:1"),
        ("", "", "9"),
        ("ünïcödé ’", "“quoted” \r\n lines", "10"),
    ]
    no_ids = tmp_path / "no_ids.csv"
    no_ids.write_text("story,prompt\nonce,p\n")
    assert [(p.prompt, p.story, p.source_id) for p in iter_pairs(no_ids)] == [
        ("p", "once", "no_ids.csv:0")
    ]


def test_broken_or_non_utf8_files_are_clear_errors(tmp_path):
    cases = [
        ("broken.csv", b'prompt,story\n"a","b"\n"c","d","e"\n', "broken.csv"),
        ("latin.csv", "prompt,story\ncaf\xe9,na\xefve\n".encode("latin-1"), "latin.csv"),
        ("header.csv", "pr\xf6mpt,story\n".encode("latin-1"), "header.csv: not UTF-8"),
        (
            "latin.jsonl",
            '{"prompt": "caf\xe9", "story": "x"}\n'.encode("latin-1"),
            "latin.jsonl: not UTF-8",
        ),
    ]
    for name, content, message in cases:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError, match=message):
            list(iter_pairs(tmp_path / name))
