"""Readers' adherence: blind batches of a comparison's stories, scored per system."""

import json

import pytest

from eval.compare import EvalError
from eval.readers import followed, make_batches, score

REQUEST = {
    "genre": "fantasy",
    "characters": [{"name": "Mara", "traits": ["kind"]}],
    "setting": {"place": "a lighthouse", "era": ""},
    "plot_points": ["the lamp goes dark"],
}


def label(sid, genre="fantasy", present=True, kind=True, place=True, event=True):
    return {
        "id": sid,
        "genre": genre,
        "genres_also": [],
        "tone": "dark",
        "tones_also": [],
        "ending": "none",
        "pov": "third person",
        "arc": "unclear",
        "place": place,
        "era": None,
        "characters": [{"name": "Mara", "present": present, "traits": {"kind": kind}}],
        "events": [event],
        "confidence": "high",
        "note": "",
    }


def test_a_readers_answers_say_which_requested_fields_a_story_follows():
    assert followed(label("x"), REQUEST) == {
        "genre": True,
        "place": True,
        "character:Mara": True,
        "trait:Mara:kind": True,
        "event:0": True,
    }
    got = followed(label("x", genre="horror", kind=False, event=False), REQUEST)
    assert got["genre"] is False and got["trait:Mara:kind"] is False and got["event:0"] is False


def test_blind_batches_hide_the_systems_and_read_a_shared_story_once(tmp_path):
    run = tmp_path / "run"
    (run / "generations").mkdir(parents=True)
    texts = {
        "one": {"i0": "Same story for both.", "i1": "A first story.", "i2": "Third story."},
        "best": {"i0": "Same story for both.", "i1": "A better story.", "i2": "Third better."},
    }
    for system, stories in texts.items():
        rows = [  # as eval.compare.generate saves them
            {"id": i, "key": "k", "story": t, "plan": None, "provenance": {"request": REQUEST}}
            for i, t in sorted(stories.items())
        ]
        (run / "generations" / f"{system}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
    made = make_batches(run, ["one", "best"], tmp_path / "r", per_batch=3)
    assert made == {"items": 3, "stories": 5, "batches": 2}
    shown = "".join(p.read_text() for p in sorted((tmp_path / "r").glob("batch_*.md")))
    assert "one" not in shown and "best" not in shown  # no system is named
    assert '"genre"' not in shown and shown.count("Same story for both.") == 1
    key = [json.loads(x) for x in (tmp_path / "r" / "key.jsonl").read_text().splitlines()]
    with pytest.raises(EvalError, match="no label yet"):
        score(tmp_path / "r")
    # The better system's stories follow the event; the first's do not (the shared one does).
    rows = []
    for k in key:
        systems = {w["system"] for w in k["writers"]}
        rows.append(label(k["id"], event=systems != {"one"}))
    (tmp_path / "r" / "labels_01.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = score(tmp_path / "r")
    assert result["items"] == 3 and result["stories"] == 5
    (pair,) = [p for p in result["pairs"] if p["scope"] == "all"]
    assert pair["a"] == "best" and pair["b"] == "one"
    assert pair["b_minus_a"] == pytest.approx(-0.2 * 2 / 3) and pair["items_that_differ"] == 2
    assert result["systems"]["best"]["all"]["mean"] == 1.0
    # Each kind of field alone: only the event moved; era was not asked for.
    kinds = {p["scope"]: p["b_minus_a"] for p in result["pairs"]}
    assert kinds["event"] == pytest.approx(-2 / 3) and kinds["character"] == 0.0
    assert "era" not in kinds and result["systems"]["one"]["event"]["items"] == 3
