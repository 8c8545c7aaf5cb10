"""Cleaning WritingPrompts text: prompt tags, paragraphs, NLTK detokenization, filtering."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from storygen.text import cut_to_sentence

_TAG_RUN = re.compile(r"^\s*((?:[\[({]\s*[A-Za-z]{2,8}\s*[\])}]\s*)+)")
_ONE_TAG = re.compile(r"[\[({]\s*([A-Za-z]{2,8})\s*[\])}]")
_XPOST = re.compile(r"[\[(]\s*x-?post[^\])]*[\])]", re.I)
META_TAGS = frozenset({"OT", "MODPOST", "META"})
"""Prompt tags of posts about the subreddit, not stories: such pairs are dropped."""
# The subreddit's recurring threads, dropped also when their tag is missing.
_META_TITLE = re.compile(r"(?:meet and greet|question of the week)\b", re.I)
# Reddit leftovers, each a whole paragraph: "Edit: formatting", "(part 1/2, continued in
# reply)", and rows of symbols such as "*====*" (scene breaks stay as paragraph breaks).
_LEFTOVER = re.compile(r"^(?:\W+|\(?\s*edit\b.*|\(?\s*part \d+\s*(?:/|of)\s*\d+\b.*)$", re.I)
# NLTK splits "gonna", "gotta", "wanna" and "cannot" in two.
_SPLIT_WORD = re.compile(r"\b(gon na|wan na|got ta|can not)\b", re.I)

# Every pattern below starts with a literal character, so the regex engine skips ahead to its
# candidates instead of trying a match at every position: at 300K stories this is most of the
# cleaning time. tests/test_fast_paths.py checks the result against straightforward patterns.
# "do n't" -> "don't", "it 's" -> "it's" (any case, straight or curly apostrophe).
_CONTRACTION = re.compile(r" (?<=\w )((?:n['’]t|['’](?:s|re|ve|ll|d|m))\b)", re.I)
# "don ' t", "don 't" -> "don't" ...
_QUOTE_AFTER_SPACE = re.compile(r" (?<=\w )(['’]) ?(?=(?:s|t|re|ve|ll|d|m)\b)")
# ... and "don' t" -> "don't".
_SPACE_AFTER_QUOTE = re.compile(r"(['’])(?<=\w['’]) (?=(?:s|t|re|ve|ll|d|m)\b)")
# A single quote at a word's edge; NLTK writes quotation marks and plural possessives apart
# ("sea pigs ' avoid"), which _attach_quotes undoes.
_EDGE_QUOTE = re.compile(r"(?:(?<=\s)|^)'|'(?=\s|$)")
_QUOTE_AFTER_SPACE_ANY = re.compile(r"'(?<=\s')")  # starts with a literal: a fast guard
_CLOSERS = frozenset('.,!?;:)]"”…')
# A dash with spaces around it ("to —", "it — and"): the Hugging Face rendering writes "to—".
_SPACED_DASH = re.compile(r"[ \t]*—[ \t]*")
_STARS = re.compile(r"\*+")
_SPACE_BEFORE = re.compile(r"  *(?=[.,!?;:%)\]}…])")
_SPACE_AFTER = re.compile(r"([(\[{$#]) +")
_REMOVED = {"[removed]", "[deleted]", "removed", "deleted", ""}
_LINK_ONLY = re.compile(r"^\s*(\(?\s*https?\s*:\s*//\S+\s*\)?\s*)+$")
_SPACES = re.compile(r"[ \t]+")
# Reddit markup in stories: a link "[text] (http: //...)" keeps its text, a bare address goes,
# and the superscript caret of "^of ^my ^subreddit" is dropped.
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]*)\] ?\( ?(?:https?:|www\.)[^)\n]*\)")
_BARE_LINK = re.compile(
    r"\( ?(?:https?: ?//|(?<![\w.])www\.[\w-]+\.)[^)\n]*\)"  # an address in brackets
    # a bare one, with its query ("watch? v=...": NLTK spaced the "?")
    r"|(?:https?: ?//|(?<![\w.])www\.[\w-]+\.)[^\s?)]*(?:\? ?[\w%-]+=\S*)?"
)
_CARET = re.compile(r"(?<!\S)\^+(?=[^\W_])")
# A header line before the story (model-written stories often open with one): "Title: ...",
# "Prompt: ...", "Writing Prompt: ...". Only the first paragraph, and only a short one.
_HEADER = re.compile(r"^[*#_\s]*(?:title|(?:writing )?prompt)\s*[*_]*\s*:", re.I)
_WORD_RUNS: dict[int, re.Pattern] = {}


def split_prompt(prompt: str) -> tuple[list[str], str]:
    """Separate the leading bracket tags from the prompt text.

    r/WritingPrompts tags: WP writing prompt, SP simple prompt, EU established universe, CW
    constrained writing, TT theme thursday, IP image prompt, MP media prompt, OT off topic, RF
    reality fiction, PI prompt inspired, FF fast finish, and rarer ones; they can stack.
    """
    m = _TAG_RUN.match(prompt)
    if not m:
        return [], _XPOST.sub("", prompt).strip()
    tags = [t.upper() for t in _ONE_TAG.findall(m.group(1))]
    return tags, _XPOST.sub("", prompt[m.end() :]).strip()


def detokenize(text: str) -> str:
    """Undo NLTK's Penn Treebank tokenization on one line of text.

    Each step is guarded by a substring test (a fast C scan) so that text which is already
    clean, as most of the Hugging Face rendering is, costs little.
    """
    if "``" in text:
        text = text.replace("``", "“")
    while "“ " in text:
        text = text.replace("“ ", "“")
    if "''" in text:
        text = text.replace("''", "”")
    while " ”" in text:
        text = text.replace(" ”", "”")
    if "'" in text or "’" in text or "‘" in text:
        text = _CONTRACTION.sub(r"\1", text)
        if " '" in text or " ’" in text:
            text = _QUOTE_AFTER_SPACE.sub(r"\1", text)
        if "' " in text or "’ " in text:
            text = _SPACE_AFTER_QUOTE.sub(r"\1", text)
        text = text.replace(" ’ ", "’ ").replace("’", "'").replace("‘", "'")
        if _QUOTE_AFTER_SPACE_ANY.search(text) or text.startswith("'") or "\n'" in text:
            text = "\n".join(map(_attach_quotes, text.split("\n")))
    if " n" in text or " t" in text or " N" in text or " T" in text:
        text = _SPLIT_WORD.sub(lambda m: m.group(0).replace(" ", ""), text)
    text = _SPACE_BEFORE.sub("", text)
    if any(c + " " in text for c in "([{$#"):
        text = _SPACE_AFTER.sub(r"\1", text)
    text = text.replace("“", '"').replace("”", '"')
    if "—" in text:
        text = _SPACED_DASH.sub("—", text)
    if "*" in text:
        text = "\n".join(map(_close_emphasis, text.split("\n")))
    if "  " in text or "\t" in text:
        text = _SPACES.sub(" ", text)
    return text.strip()


def _attach_quotes(line: str) -> str:
    """Attach each single quote that NLTK wrote apart to its word: an opening quote to the word
    after it, a closing one or a plural possessive ("sea pigs ' avoid") to the word before.

    Every quote at a word's edge is read left to right. Most say what they are: "word'" closes
    (or is a possessive), "'word" opens, and one before punctuation ("' ,") closes. A lone one
    closes an open quotation; else, after a word ending in s, it opens a quotation when the
    next edge quote closes one, or when it is lone too, not after an s, and an odd number
    follow ("yells ' run ' and"), and is a possessive otherwise; after any other word it opens
    one.
    """
    quotes = []  # (position, kind): "close", "open" or "lone"
    for m in _EDGE_QUOTE.finditer(line):
        i = m.start()
        after = line[i + 1 :].lstrip()
        if i and not line[i - 1].isspace():
            kind = "attached"
        elif after[:1] in _CLOSERS:
            kind = "close"
        elif i + 1 < len(line) and not line[i + 1].isspace():
            kind = "open"
        else:
            kind = "lone" if after else "close"
        quotes.append((i, kind))
    out, start, quoting = [], 0, False
    for n, (i, kind) in enumerate(quotes):
        if kind == "attached":
            quoting = False
            continue
        word_before = line[start:i].rstrip()
        rest = line[i + 1 :]
        if kind == "lone" and word_before and not quoting:
            following = [k for _, k in quotes[n + 1 :]]
            # The next quote a possessive too ("the boys ' ball and the girls ' hats")?
            next_possessive = (
                bool(following)
                and following[0] == "lone"
                and line[: quotes[n + 1][0]].rstrip()[-1:] in ("s", "S")
            )
            opens = word_before[-1] not in "sS" or (
                bool(following)
                and not next_possessive
                and (following[0] in ("attached", "close") or len(following) % 2 == 1)
                and following[0] != "open"
            )
        else:
            opens = kind == "open" or (kind == "lone" and not word_before)
        if opens:  # the space after it goes
            out.append(line[start:i] + "'")
            start = len(line) - len(rest.lstrip(" \t"))
        else:  # closes, or a possessive: the space before it goes
            out.append(word_before + "'")
            start = i + 1
        quoting = opens
    out.append(line[start:])
    return "".join(out)


def _close_emphasis(line: str) -> str:
    """Markdown emphasis written apart ("clean * that * up", "** Title **") closed up, when the
    line's runs of stars pair up; "2 * 3" (an odd count) is left as it is, but an even count of
    multiplication stars is taken for emphasis ("5 * 4 * 3" becomes "5 *4* 3")."""
    runs = list(_STARS.finditer(line))
    if len(runs) < 2 or len(runs) % 2:
        return line
    out, start = [], 0
    for n, m in enumerate(runs):
        if n % 2 == 0:  # opens: the spaces after it go
            out.append(line[start : m.end()])
            start = len(line) - len(line[m.end() :].lstrip(" \t"))
        else:  # closes: the spaces before it go
            out.append(line[start : m.start()].rstrip(" \t") + m.group(0))
            start = m.end()
    out.append(line[start:])
    return "".join(out)


def _unlink(text: str) -> str:
    """Reddit markup out of detokenized text: links keep their words, addresses and
    superscript carets go."""
    if "http" in text or "www." in text:
        text = _BARE_LINK.sub("", _MARKDOWN_LINK.sub(r"\1", text))
        text = _SPACES.sub(" ", _SPACE_BEFORE.sub("", text))
    if "^" in text:
        text = _CARET.sub("", text)
    return text


def paragraphs(story: str) -> list[str]:
    """Split a story into paragraphs; ``<newline>`` tokens and real newlines both count.

    Detokenizes the whole story in one pass (the patterns never cross a newline), which is
    several times faster than once per line at full-dataset scale.
    """
    text = _unlink(detokenize(story.replace("<newline>", "\n")))
    lines = (line.strip() for line in text.split("\n"))
    paras = [p for p in lines if p and not _LEFTOVER.match(p)]
    if paras and len(paras[0].split()) <= 30 and _HEADER.match(paras[0]):
        del paras[0]
    return paras


def truncate_words(text: str, budget: int, n_words: int | None = None) -> str:
    """Keep at most ``budget`` words, cut at the last sentence end inside that budget.

    ``n_words`` is ``len(text.split())`` when the caller already knows it.
    """
    if (len(text.split()) if n_words is None else n_words) <= budget:
        return text
    if budget not in _WORD_RUNS:  # one C-level match finds the end of word number ``budget``
        _WORD_RUNS[budget] = re.compile(rf"\s*(?:\S+\s+){{{budget - 1}}}\S+")
    cut = _WORD_RUNS[budget].match(text).group(0)
    return cut_to_sentence(cut)


@dataclass
class CleanPair:
    """A usable pair: prompt text, tags and the cleaned story (blank line between paragraphs)."""

    prompt: str
    tags: list[str]
    story: str
    source_id: str
    words: int  # len(story.split())


def clean_pair(
    prompt: str, story: str, source_id: str, word_budget: int = 1000, min_words: int = 30
) -> tuple[CleanPair | None, str]:
    """Clean one raw pair. Returns (pair, "") or (None, why it was dropped)."""
    stripped = story.strip()
    if len(stripped) <= 9 and stripped.lower() in _REMOVED:  # "[removed]" is the longest
        return None, "empty or removed story"
    if _LINK_ONLY.match(story.replace("<newline>", " ")):
        return None, "link-only story"
    tags, prompt_text = split_prompt(detokenize(prompt.replace("<newline>", " ")))
    meta = META_TAGS.intersection(tags)
    if meta:
        return None, f"meta post ({min(meta)})"
    if not tags and _META_TITLE.match(prompt_text):  # a tagged prompt is a writing prompt
        return None, "meta post (title)"
    paras = paragraphs(story)
    text = "\n\n".join(paras)
    n_words = len(text.split())
    if n_words < min_words:
        return None, f"shorter than {min_words} words"
    if n_words > word_budget:
        text = truncate_words(text, word_budget, n_words)
        n_words = len(text.split())
    return CleanPair(prompt_text, tags, text, source_id, n_words), ""


def text_key(text: str) -> str:
    """A hash that identifies a text up to case and whitespace."""
    norm = " ".join(text.lower().split())
    return hashlib.blake2b(norm.encode(), digest_size=12).hexdigest()


def fingerprint(pair: CleanPair) -> str:
    """A hash that identifies a pair up to case and whitespace, for de-duplication."""
    return text_key(pair.prompt + " || " + pair.story)
