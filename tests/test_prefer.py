"""Preference data from votes, thumbs and edits: what is chosen, what is left out and why."""

import json

import pytest

from finetune.prefer import PreferError, build_preferences
from human_ratings.pairs import Item, ItemLog, item_row
from human_ratings.reactions import Reaction, ReactionLog
from human_ratings.store import VoteStore
from storygen.prompt_format import PROMPT_FORMAT_VERSION, render_request
from storygen.request import Plan, Setting, StoryRequest

from .conftest import make_vote

REQUEST = StoryRequest(genre="mystery", prompt="a lighthouse keeper")
PROV = {"request": REQUEST.to_dict(), "sampling": {"seed": 3}, "adapter_name": "demo"}


def _items(path):
    items = [
        Item("i1", REQUEST, {"base": {"text": "Base one."}, "tuned": {"text": "Tuned one."}}),
        Item("i2", REQUEST, {"base": {"text": "Base two."}, "tuned": {"text": "Tuned two."}}),
    ]
    path.write_text("".join(json.dumps(item_row(it)) + "\n" for it in items))
    return path


def test_votes_become_pairs_and_ties_and_unknown_items_are_counted_out(tmp_path):
    items, votes = _items(tmp_path / "pairs.jsonl"), tmp_path / "votes.csv"
    store = VoteStore(votes)
    store.append(
        make_vote("a", "i1", "base", "tuned", "right", left_coherence=4, right_coherence=2)
    )
    store.append(
        make_vote("b", "i1", "tuned", "base", "right", left_coherence=3, right_coherence=3)
    )
    store.append(make_vote("a", "i2", "tuned", "base", "tie"))
    store.append(make_vote("b", "i2", "base", "tuned", "both_bad"))
    store.append(make_vote("c", "gone", "base", "tuned", "left"))
    report = build_preferences(tmp_path / "out", votes, [items])
    pairs = [json.loads(line) for line in (tmp_path / "out" / "pairs.jsonl").open()]
    prompt = render_request(REQUEST, PROMPT_FORMAT_VERSION)
    assert [(p["chosen"], p["rejected"], p["annotator"]) for p in pairs] == [
        ("Tuned one.", "Base one.", "a"),
        ("Base one.", "Tuned one.", "b"),
    ]
    assert all(p["prompt"] == prompt and p["source"] == "vote" for p in pairs)
    assert report.to_dict()["dropped"] == {
        "vote: tie": 1,
        "vote: both bad": 1,
        "vote: its A/B item is in no items file given": 1,
    }
    # One criterion instead of the overall choice: a's coherence favours the left (base).
    by_coherence = build_preferences(tmp_path / "c", votes, [items], criterion="coherence")
    pairs = [json.loads(line) for line in (tmp_path / "c" / "pairs.jsonl").open()]
    assert [(p["chosen"], p["criterion"]) for p in pairs] == [("Base one.", "coherence")]
    assert by_coherence.dropped["vote: coherence rated the same on both sides"] == 1
    assert by_coherence.dropped["vote: coherence not rated on both sides"] == 2  # i2 twice


def test_edits_are_pairs_and_thumbs_are_unpaired_with_the_storys_own_prompt(tmp_path):
    log = ReactionLog(tmp_path / "reactions.jsonl")
    planned = {**PROV, "plan": Plan("A keeper.", ["Mara waits."], "edited").to_dict()}
    log.append(Reaction("up", "Good one.", system="demo", provenance=PROV))
    log.append(Reaction("down", "Bad one.", system="demo", provenance=planned))
    log.append(Reaction("edit", "Rough.", edited="Smooth.", system="demo", provenance=PROV))
    log.append(Reaction("up", "Mine, then its.", provenance={**PROV, "continued_from_chars": 5}))
    log.append(Reaction("down", "No request.", provenance={}))
    report = build_preferences(tmp_path / "out", reactions=tmp_path / "reactions.jsonl")
    out = tmp_path / "out"
    (pair,) = [json.loads(line) for line in (out / "pairs.jsonl").open()]
    up, down = [json.loads(line) for line in (out / "unpaired.jsonl").open()]
    plain = render_request(REQUEST, PROMPT_FORMAT_VERSION)
    assert (pair["prompt"], pair["chosen"], pair["rejected"]) == (plain, "Smooth.", "Rough.")
    assert (up["completion"], up["label"], up["prompt"]) == ("Good one.", True, plain)
    assert (down["completion"], down["label"]) == ("Bad one.", False)
    assert down["prompt"] == render_request(
        REQUEST, PROMPT_FORMAT_VERSION, Plan("A keeper.", ["Mara waits."], "edited")
    )
    assert json.loads((out / "report.json").read_text()) == {
        "pairs": {"edits": 1},
        "unpaired": {"thumbs_up": 1, "thumbs_down": 1},
        "dropped": {
            "up: a story continued from the reader's own text": 1,
            "down: no usable request in its provenance": 1,
        },
        "total_pairs": 1,
        "total_unpaired": 2,
    }
    assert report.to_dict()["total_unpaired"] == 2


def test_live_items_are_kept_so_their_votes_keep_their_stories(tmp_path):
    log = ItemLog(tmp_path / "live_items.jsonl")
    item = Item("live-1", REQUEST, {"base": {"text": "B."}, "tuned": {"text": "T."}})
    log.append(item)
    with (tmp_path / "live_items.jsonl").open("ab") as f:
        f.write(b'{"item_id": "live-2", "requ')  # the app killed mid-append
    assert log.read_all() == ([item], 1)
    log.append(Item("live-3", REQUEST, item.stories))
    assert [it.item_id for it in log.read_all()[0]] == ["live-1", "live-3"]
    VoteStore(tmp_path / "votes.csv").append(make_vote("a", "live-3", "base", "tuned", "left"))
    report = build_preferences(
        tmp_path / "o", tmp_path / "votes.csv", [tmp_path / "live_items.jsonl"]
    )
    assert report.pairs == {"votes": 1} and not report.dropped


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "give the votes log, the reactions log, or both"),
        ({"votes": "missing.csv", "items": ["x"]}, "does not exist"),
        ({"votes": "votes.csv"}, "give the items file"),
        ({"reactions": "nope.jsonl"}, "does not exist"),
    ],
)
def test_what_cannot_be_built_is_said(tmp_path, kwargs, message):
    (tmp_path / "votes.csv").write_text("")
    kwargs = {
        k: ([tmp_path / p for p in v] if isinstance(v, list) else tmp_path / v)
        for k, v in kwargs.items()
    }
    with pytest.raises(PreferError, match=message):
        build_preferences(tmp_path / "out", **kwargs)


def test_prompts_are_rendered_for_the_parents_format_and_tuning_refuses_another(tmp_path):
    from finetune.preference import PreferenceConfig, PreferenceDataError, read_examples
    from storygen.prompt_format import V1, V2

    asked = StoryRequest(genre="mystery", setting=Setting("a lighthouse, north", ""), arc="tragedy")
    items = tmp_path / "items.jsonl"
    item = Item("i1", asked, {"base": {"text": "Base."}, "tuned": {"text": "Tuned."}})
    items.write_text(json.dumps(item_row(item)) + "\n")
    votes = tmp_path / "votes.csv"
    VoteStore(votes).append(make_vote("a", "i1", "base", "tuned", "left"))
    build_preferences(tmp_path / "v2", votes, [items], prompt_format=V2)
    (pair,) = [json.loads(line) for line in (tmp_path / "v2" / "pairs.jsonl").open()]
    assert pair["prompt"] == render_request(asked, V2) and "lighthouse\\, north" in pair["prompt"]
    assert pair["prompt_format"] == V2
    # a version-1 parent cannot read the arc: the vote is counted out, not mistranslated
    report = build_preferences(tmp_path / "v1", votes, [items], prompt_format=V1)
    assert report.dropped == {f"vote: its request has what {V1} cannot say": 1}
    with pytest.raises(PreferError, match="unknown prompt format"):
        build_preferences(tmp_path / "x", votes, [items], prompt_format="storygen-tags-v9")
    cfg = PreferenceConfig(parent="p", data_dir=str(tmp_path / "v2"), held_out=0.0)
    assert len(read_examples(cfg, V2)[0]) == 1
    with pytest.raises(PreferenceDataError, match=f"--prompt-format {PROMPT_FORMAT_VERSION}"):
        read_examples(cfg, PROMPT_FORMAT_VERSION)


def test_the_held_out_share_is_the_share_asked_for(tmp_path):
    """held_out is the share kept out of training (0.2 trains on 80%), not its complement;
    chosen by a hash of each example, so it is the same on every run."""
    import json

    from finetune.preference import PreferenceConfig, read_examples

    rows = [
        {"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}", "prompt_format": "x"}
        for i in range(2000)
    ]
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for share in (0.1, 0.2, 0.5):
        cfg = PreferenceConfig(data_dir=str(tmp_path), held_out=share)
        train, held, _ = read_examples(cfg, "x")
        assert len(train) + len(held) == 2000
        assert abs(len(held) / 2000 - share) < 0.03, (share, len(held))
        assert read_examples(cfg, "x")[1] == held
