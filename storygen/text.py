"""Sentences: where one ends and how a text splits into them, the one rule every module uses
(story clean-up, word budgets, plan lines, arcs, beats, plot points and the judges)."""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]*]*(?=\s|$)")
"""A stop (with the quotes, brackets or emphasis that close it) followed by a space or the
end of the text."""
END_MARK = re.compile(r"[.!?…]+[\"'”’)\]]*")
"""A run of stops with what closes it, wherever it stands (a text being written may stop
anywhere)."""
TITLE_END = re.compile(  # a title's period ("Mr.") ends no sentence
    r"(?<![A-Za-z])(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Capt|Lt|Sgt|Col|Gen|Rev)\.$"
)
_SENTENCE = re.compile(r"[^.!?…\n]+(?:[.!?…]+[\"'”’)\]]*|\n|$)")


def sentences(text: str) -> list[str]:
    """The text's sentences (and lines), stripped, without empty ones; a line break always
    ends one, and a title's period ("Mr. Walters") ends none."""
    out: list[str] = []
    end = 0  # where the last piece ended: a line break after it starts a new sentence anyway
    for m in _SENTENCE.finditer(text):
        piece, gap, end = m.group(0).strip(), text[end : m.start()], m.end()
        if (
            out
            and "\n" not in gap
            and out[-1].endswith(".")
            and piece[:1].isupper()
            and TITLE_END.search(out[-1])
        ):
            out[-1] += " " + piece
        elif piece:
            out.append(piece)
    return out


def cut_to_sentence(text: str) -> str:
    """``text`` up to the end of its last whole sentence (all of it when none ends)."""
    ends = list(SENTENCE_END.finditer(text))
    return text[: ends[-1].end()] if ends else text
