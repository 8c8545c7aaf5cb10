"""Tagger accuracy on a hand-labelled set (``finetune/gold/tagger_gold.jsonl``).

The 16 stories there were written and labelled by hand for this project (not drawn from
WritingPrompts), labels fixed before the tagger was run on them. Per-field accuracy is the share
of stories where the tagger's label equals the hand label; for characters it is recall and
precision of the hand-labelled names.
"""

from __future__ import annotations

import json
from pathlib import Path

from finetune.tagger import tag_story

FIELDS = ("genre", "tone", "ending", "pov", "place")


def accuracy(path: Path) -> dict:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    hits = dict.fromkeys(FIELDS, 0)
    found_names = true_names = right_names = 0
    confusions = []
    for row in rows:
        req = tag_story(row["story"]).request
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
                confusions.append({"field": f, "gold": row[f], "tagger": got[f]})
        names = {c.name for c in req.characters}
        found_names += len(names)
        true_names += len(row["characters"])
        right_names += len(names & set(row["characters"]))
    n = len(rows)
    return {
        "stories": n,
        **{f"{f}_accuracy": hits[f] / n for f in FIELDS},
        "character_recall": right_names / true_names if true_names else float("nan"),
        "character_precision": right_names / found_names if found_names else float("nan"),
        "errors": confusions,
    }
