"""Tagger accuracy on hand-labelled sets.

``finetune/gold/tagger_gold.jsonl``: 16 stories written and labelled by hand for this project
(not drawn from WritingPrompts). ``tagger_gold_wp.jsonl``: 60 real WritingPrompts stories (rows
81-140 of the shared sample in file order), labelled by a reader who saw neither the tagger
nor its word lists; the tagger's comic-story rule and name rules were read off them.
``tagger_gold_wp_test.jsonl``: rows 141-200, labelled the same way after those rules were
written, and held out from them. ``arc_gold_wp.jsonl``: arcs of the sample's first 80 rows.
Every set's labels were fixed before the tagger was run on it. Per-field accuracy is the share
of stories where the tagger's label equals the hand label; for characters it is recall and
precision of the hand-labelled names, a tagged name matching a hand-labelled one when the two
share a name word other than a title ("Dr. Mathers" and "Mathers"), each name matched once.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune.clean import CleanPair, clean_pair
from storygen.lexicons import TITLES
from storygen.tagger import _WORD, tag_story

FIELDS = ("genre", "tone", "ending", "pov", "place")


def accuracy(path: Path) -> dict:
    """Per-field accuracy on the invented, hand-labelled stories (the story is in each row)."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return field_accuracy([(row, row["story"], "", []) for row in rows])


def wp_field_accuracy(gold: Path, data: Path) -> dict:
    """Per-field accuracy on real WritingPrompts stories labelled by hand
    (``finetune/gold/tagger_gold_wp.jsonl``: rows 81-140 of the shared sample in file order,
    labelled before the tagger was run on them); the stories are read from ``data`` and cleaned
    as preprocessing cleans them and tagged with their prompts, as preprocessing tags them. A
    row preprocessing drops is left out, as in training.
    Each field also gives the score of always answering its most common hand label."""
    rows = [json.loads(line) for line in gold.read_text().splitlines() if line.strip()]
    pairs = _real_stories(rows, data)
    kept = [
        (row, pair.story, pair.prompt, pair.tags)
        for row in rows
        if (pair := pairs[str(row["row_id"])])
    ]
    if not kept:
        raise ValueError(f"preprocessing keeps none of the {len(rows)} rows labelled in {gold}")
    report = field_accuracy(kept)
    report["dropped_by_preprocessing"] = [r["row_id"] for r in rows if not pairs[str(r["row_id"])]]
    for f in FIELDS:
        labels = [row[f] for row, *_ in kept]
        top = max(sorted(set(labels)), key=labels.count)
        report[f"{f}_majority"] = {"label": top, "accuracy": labels.count(top) / len(labels)}
    return report


def field_accuracy(labelled: list[tuple[dict, str, str, list[str]]]) -> dict:
    """The tagger against (hand labels, story, prompt, prompt tags): per-field accuracy, and
    recall and precision of the hand-labelled character names."""
    hits = dict.fromkeys(FIELDS, 0)
    found_names = true_names = right_names = 0
    confusions = []
    for row, story, prompt, prompt_tags in labelled:
        req = tag_story(story, prompt, prompt_tags).request
        got = {
            "genre": req.genre,
            "tone": req.tone,
            "ending": req.ending,
            "pov": req.pov,
            "place": req.setting.place,
        }
        for f in FIELDS:
            ok = got[f] == row[f]
            hits[f] += ok
            if not ok:
                confusions.append(
                    {"row_id": row.get("row_id"), "field": f, "gold": row[f], "tagger": got[f]}
                )
        names = [c.name for c in req.characters]
        found_names += len(names)
        true_names += len(row["characters"])
        right_names += len(matched_names(names, row["characters"]))
    n = len(labelled)
    return {
        "stories": n,
        **{f"{f}_accuracy": hits[f] / n for f in FIELDS},
        "character_recall": right_names / true_names if true_names else float("nan"),
        "character_precision": right_names / found_names if found_names else float("nan"),
        "errors": confusions,
    }


def same_character(a: str, b: str) -> bool:
    """Whether two names are one character's: they share a name word other than a title
    ("Dr. Mathers" and "Mathers", "Dwight Walters" and "Dwight")."""
    words = [{w for w in _WORD.findall(n) if w not in TITLES} for n in (a, b)]
    return bool(words[0] & words[1])


def matched_names(tagged: list[str], labelled: list[str]) -> list[tuple[str, str]]:
    """Tagged names paired one to one with labelled names of the same character, in order
    (each name is used once: "Dwight" and "Walters" cannot both match "Dwight Walters")."""
    pairs, free = [], list(labelled)
    for name in tagged:
        match = next((g for g in free if same_character(name, g)), None)
        if match is not None:
            free.remove(match)
            pairs.append((name, match))
    return pairs


def _real_stories(rows: list[dict], data: Path) -> dict[str, CleanPair | None]:
    """row id -> the cleaned pair (None for a row preprocessing drops), read from ``data``."""
    from finetune.data import iter_pairs

    wanted = {str(row["row_id"]) for row in rows}
    stories = {}
    for raw in iter_pairs(data):
        if str(raw.source_id) in wanted:
            pair, _ = clean_pair(raw.prompt, raw.story, raw.source_id)
            stories[str(raw.source_id)] = pair
    missing = sorted(wanted - set(stories))
    if missing:
        raise ValueError(f"{data} lacks {len(missing)} labelled rows (first: {missing[0]})")
    return stories


DEV_ROWS = 40
"""The first 40 hand-labelled stories chose the tagger's window count; the rest are held out."""


def arc_accuracy(gold: Path, data: Path) -> dict:
    """The arc tagger against arcs labelled by hand on real WritingPrompts stories.

    ``gold`` holds one line per story (``row_id``, ``arc``, ``confidence``, ``reason``); the
    stories themselves are read from ``data`` (the WritingPrompts CSV they came from, which is
    not part of this repository). The labels were fixed before the tagger was written, on the
    first 80 rows of the shared sample in file order. The first :data:`DEV_ROWS` served to
    choose between trajectory variants, so the figures that count are ``held_out``'s. A story
    labelled ``unclear`` has no arc; the tagger is right on it when it names none. Each part
    also gives the score of always answering its most common hand label (``majority``).
    """
    rows = [json.loads(line) for line in gold.read_text().splitlines() if line.strip()]
    pairs = _real_stories(rows, data)
    # A row preprocessing drops (a meta post) is never tagged in training: it is left out here.
    dropped = [r["row_id"] for r in rows if pairs[str(r["row_id"])] is None]
    tagged = {
        str(r["row_id"]): tag_story(pairs[str(r["row_id"])].story).request.arc
        for r in rows
        if r["row_id"] not in dropped
    }
    scored = [r for r in rows if r["row_id"] not in dropped]
    dev = [r for r in scored if rows.index(r) < DEV_ROWS]
    held = [r for r in scored if rows.index(r) >= DEV_ROWS]
    return {
        "stories": len(rows),
        "dropped_by_preprocessing": dropped,
        "development": _arc_scores(dev, tagged),
        "held_out": _arc_scores(held, tagged),
    }


def _arc_scores(rows: list[dict], tagged: dict[str, str]) -> dict:
    clear = [r for r in rows if r["arc"] != "unclear"]
    got = [tagged[str(r["row_id"])] for r in clear]
    named = [g for g in got if g]
    right = sum(g == r["arc"] for g, r in zip(got, clear, strict=True))
    unclear = [r for r in rows if r["arc"] == "unclear"]
    labels = [r["arc"] for r in clear]
    majority = max(sorted(set(labels)), key=labels.count) if labels else ""

    def share(a, b):
        return a / b if b else float("nan")

    return {
        "stories": len(rows),
        "with_an_arc": len(clear),
        "arc_accuracy": share(right, len(clear)),
        "arc_precision": share(right, len(named)),
        "arc_coverage": share(len(named), len(clear)),
        "unclear_left_out": share(sum(not tagged[str(r["row_id"])] for r in unclear), len(unclear)),
        "majority_label": majority,
        "majority_accuracy": share(labels.count(majority), len(clear)),
        "errors": [
            {"row_id": r["row_id"], "gold": r["arc"], "tagger": g or None}
            for g, r in zip(got, clear, strict=True)
            if g != r["arc"]
        ],
    }
