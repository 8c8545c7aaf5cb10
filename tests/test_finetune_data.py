"""WritingPrompts loading (both renderings), cleaning, tagging and the preprocessing report."""

import json

import pytest

from finetune.build import build, read_examples
from finetune.clean import clean_pair, detokenize, split_prompt, truncate_words
from finetune.data import DataError, iter_pairs
from finetune.gold import accuracy
from storygen.prompt_format import STORY_MARKER, parse_request
from storygen.tagger import tag_story

from .conftest import FIXTURES


def test_both_renderings_give_the_same_clean_pairs():
    hf = [clean_pair(p.prompt, p.story, p.source_id)[0] for p in iter_pairs(FIXTURES / "wp_hf.csv")]
    js = [
        clean_pair(p.prompt, p.story, p.source_id)[0] for p in iter_pairs(FIXTURES / "wp_hf.jsonl")
    ]
    orig = [
        clean_pair(p.prompt, p.story, p.source_id)[0]
        for p in iter_pairs(FIXTURES / "wp_original", "valid")
    ]
    assert len(hf) == len(orig) == len(js) == 8
    for a, b, c in zip(hf, orig, js):
        assert (a is None) == (b is None) == (c is None)
        if a is not None:
            assert a.story == b.story == c.story and a.prompt == b.prompt and a.tags == b.tags


def test_both_renderings_of_emphasis_quotes_and_dashes_clean_to_one_text():
    # The original release (NLTK-tokenized, <newline>) and the Hugging Face rendering of one
    # story: emphasis, single quotes and dashes are written apart in the first only.
    original = (
        "The sea pigs ' avoid the reef , and nobody knows why . `` Clean * that * up , '' said "
        "Ola , `` or I will go to — '' <newline> <newline> ** The End ** of the tale was ' "
        "unwritten ' , she thought , and the pigs ' songs went on — softly — into the night ."
    )
    hf = (
        "The sea pigs' avoid the reef , and nobody knows why . `` Clean *that* up , '' said Ola "
        ", `` or I will go to— '' \n \n **The End** of the tale was 'unwritten ', she thought , "
        "and the pigs' songs went on—softly—into the night ."
    )
    a, _ = clean_pair("[ WP ] Sea pigs", original, "1")
    b, _ = clean_pair("[ WP ] Sea pigs", hf, "1")
    assert (
        a.story
        == b.story
        == (
            'The sea pigs\' avoid the reef, and nobody knows why. "Clean *that* up," said Ola, '
            "\"or I will go to—\"\n\n**The End** of the tale was 'unwritten', she thought, and the "
            "pigs' songs went on—softly—into the night."
        )
    )


def test_single_quotes_open_close_or_mark_a_plural_possessive():
    assert detokenize("he said ' hello there ' and left") == "he said 'hello there' and left"
    assert detokenize("was ' good ' he said") == "was 'good' he said"  # a quotation, not "was'"
    assert detokenize("the pigs ' food was ' bad '") == "the pigs' food was 'bad'"
    assert (
        detokenize("the boys ' ball and the girls ' hats") == "the boys' ball and the girls' hats"
    )
    assert detokenize("so-called ' Demon-King ', hero") == "so-called 'Demon-King', hero"
    assert detokenize("' Hi ' she said , ending with pigs '") == "'Hi' she said, ending with pigs'"


def test_emphasis_closes_up_only_when_its_stars_pair():
    assert detokenize("clean * that * up , ** now **") == "clean *that* up, **now**"
    assert detokenize("*I came in like a wrecking ball! *") == "*I came in like a wrecking ball!*"
    assert detokenize("2 * 3 is six") == "2 * 3 is six"  # an odd count: not emphasis


def test_detokenize_undoes_nltk():
    assert detokenize("`` I do n't like it , '' she said .") == '"I don\'t like it," she said.'
    assert detokenize("It 's ( maybe ) $ 5 ... right ?") == "It's (maybe) $5... right?"
    assert detokenize("we ’ re here") == "we're here"  # apostrophes straightened, like quotes


def test_prompt_tags_are_parsed_even_stacked():
    assert split_prompt("[ EU ] [ TT ] Holmes returns\n") == (["EU", "TT"], "Holmes returns")
    assert split_prompt("[wp] lower case") == (["WP"], "lower case")
    assert split_prompt("No tag here") == ([], "No tag here")


def test_paragraphs_and_drop_reasons():
    pair, _ = clean_pair("[ WP ] x", "One two three . <newline> <newline> " + "word " * 40, "a")
    assert pair.story.startswith("One two three.\n\nword")
    assert clean_pair("[ WP ] x", "[removed]", "b") == (None, "empty or removed story")
    assert clean_pair("[ WP ] x", "( http : //i.imgur.com/x.jpg )", "c")[1] == "link-only story"
    assert clean_pair("[ WP ] x", "Too short .", "d")[1].startswith("shorter than")


def test_truncation_stops_at_a_sentence_boundary():
    text = "One two three. Four five six. Seven eight nine."
    assert truncate_words(text, 5) == "One two three."
    assert truncate_words(text, 100) == text


def test_build_writes_examples_and_an_honest_report(tmp_path):
    report = build(FIXTURES / "wp_hf.csv", tmp_path, valid_fraction=0.0, progress=False)
    assert report.read == 8 and report.kept == 4
    assert report.dropped == {
        "empty or removed story": 1,
        "link-only story": 1,
        "shorter than 30 words": 1,
        "duplicate": 1,
    }
    rows = read_examples(tmp_path / "train.jsonl")
    assert len(rows) == 4 and report.train == 4
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["kept"] == 4 and saved["prompt_tags"]["WP"] >= 2
    with_setting = [r for r in rows if any(r["request"]["setting"].values())]
    assert 0 < len(with_setting) < len(rows)
    assert saved["fields_present"]["setting"] == len(with_setting)
    for row in rows:
        assert row["prompt"].endswith(STORY_MARKER + "\n")
        assert parse_request(row["prompt"]).to_dict() == row["request"]  # the shared format


def test_bad_inputs_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("title,body\na,b\n")
    with pytest.raises(DataError, match="missing column"):
        list(iter_pairs(bad))
    with pytest.raises(DataError, match="does not exist"):
        list(iter_pairs(tmp_path / "nope.csv"))
    (tmp_path / "stories.txt").write_text("hello")
    with pytest.raises(DataError, match="unknown format"):
        list(iter_pairs(tmp_path / "stories.txt"))
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"prompt": "a", "story": "b"}\n{oops\n')
    with pytest.raises(DataError, match="bad.jsonl:2"):
        list(iter_pairs(bad_json))


def test_tagger_is_deterministic_and_finds_the_obvious():
    story = next(iter_pairs(FIXTURES / "wp_hf.csv")).story
    pair, _ = clean_pair("[ WP ] dragon", story, "x")
    a, b = tag_story(pair.story).request, tag_story(pair.story).request
    assert a == b
    assert a.genre == "fantasy" and a.pov == "third person"
    assert "Ember" in [c.name for c in a.characters]


def test_names_are_whole_and_common_words_are_not_names():
    from storygen.tagger import characters

    story = (
        "Dwight Walters sold paper. Everyone liked Dwight, and Dwight liked the office. "
        "Captain Flint came by; Flint wanted paper too. Blood was on his coat, the blood of a "
        "seagull. Unlike Paul, nobody asked. Paul stayed home. Blood, said Paul, is thick."
    )
    names = [c.name for c in characters(story, limit=5)]
    # Walters joins Dwight; a title and a word that only starts a sentence join nothing; "Blood"
    # is written in lower case too, so it is a word.
    assert names == ["Dwight Walters", "Paul", "Flint"]
    # A title met often is still no name, and joins none.
    two = "Captain Flint sailed. Captain Flint laughed. The Captain slept. Captain Hook waited."
    assert [c.name for c in characters(two)] == ["Flint"]


def test_a_lively_story_reads_as_comedy_and_a_quiet_one_does_not():
    quiet = " ".join(["The snow fell on the empty road and the old house stood dark."] * 6)
    lively = (
        '"Did you eat my sandwich?" "No!" "You did!" "Fine, I did! It was delicious!" ' * 3 + quiet
    )
    # One exclamation in a short poem: a high rate, but too few marks to call it a joke.
    poem = "Betrayed! " + " ".join(["The cold wind took what the years had left of us."] * 3)
    assert tag_story(poem).request.tone != "humorous"
    assert tag_story(lively).request.tone == "humorous"
    assert tag_story(lively).request.genre == "comedy"
    calm = tag_story(quiet).request
    assert calm.tone != "humorous" and calm.genre != "comedy"


def test_a_tagged_name_matches_a_labelled_one_by_a_shared_name_word():
    from finetune.gold import same_character

    assert same_character("Dr. Mathers", "Mathers") and same_character("Dwight Walters", "Dwight")
    assert not same_character("Dr. Mathers", "Dr. Hurst")  # a shared title is not a name
    assert not same_character("Anna", "Hannah")
    from finetune.gold import matched_names

    # One to one: two halves of a name are one match, one surname is one character.
    assert matched_names(["Dwight", "Walters"], ["Dwight Walters"]) == [
        ("Dwight", "Dwight Walters")
    ]
    assert matched_names(["Smith"], ["Mr. Smith", "Mrs. Smith"]) == [("Smith", "Mr. Smith")]


def test_tagger_accuracy_on_the_hand_labelled_set():
    """Floors at the measured values (16 stories): one more story tagged wrong fails here;
    when the tagger improves, raise them."""
    from pathlib import Path

    import finetune

    result = accuracy(Path(finetune.__file__).parent / "gold" / "tagger_gold.jsonl")
    assert result["stories"] == 16
    measured = {"genre": 16, "pov": 15, "place": 12, "tone": 7, "ending": 8}
    for field, right in measured.items():
        assert result[f"{field}_accuracy"] >= right / 16, (field, result[f"{field}_accuracy"])
    assert result["character_recall"] >= 6 / 7 - 1e-9 and result["character_precision"] == 1.0


def test_several_workers_write_exactly_what_one_writes(tmp_path):
    one = build(FIXTURES / "wp_hf.csv", tmp_path / "one", workers=1, progress=False)
    two = build(FIXTURES / "wp_hf.csv", tmp_path / "two", workers=2, progress=False)
    assert one.to_dict() == two.to_dict()
    for name in ("train.jsonl", "valid.jsonl"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_tagger_breaks_ties_the_same_way_in_every_process():
    import os
    import subprocess
    import sys
    from pathlib import Path

    story = "They met in the forest. Later they rode to the castle. " * 3
    code = (
        "from storygen.tagger import tag_story; import sys; "
        f"sys.stdout.write(tag_story({story!r}).request.setting.place)"
    )
    root = Path(__file__).resolve().parent.parent
    seen = {
        subprocess.run(
            [sys.executable, "-c", code],
            cwd=root,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(root)},
        ).stdout
        for seed in (1, 2, 3, 4)
    }
    assert seen == {"forest"}  # the first-mentioned place wins a tie, whatever the hash seed


def test_preprocess_command_line(tmp_path, capsys):
    from finetune.__main__ import main

    assert main(["preprocess", str(FIXTURES / "wp_hf.csv"), "--out", str(tmp_path / "ok")]) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == 4
    assert (tmp_path / "ok" / "train.jsonl").exists()
    broken = tmp_path / "broken.csv"
    broken.write_text('prompt,story\n"a","b"\n"c","d","e"\n')
    for workers in ("1", "2"):
        args = ["preprocess", str(broken), "--out", str(tmp_path / "no"), "--workers", workers]
        assert main(args) == 2
        assert "broken.csv" in capsys.readouterr().err


def test_reddit_leftovers_and_split_words_are_cleaned():
    from finetune.clean import clean_pair, detokenize, split_prompt

    assert detokenize("I 'm gon na go , we got ta , Wan na ? I can not’ve") == (
        "I'm gonna go, we gotta, Wanna? I cannot've"
    )
    assert detokenize("She said ‘no’ and it ’ s fine") == "She said 'no' and it's fine"
    assert split_prompt("{ WP } A dragon [ X-Post from /r/Fantasy ] wakes") == (
        ["WP"],
        "A dragon  wakes",
    )
    story = " ".join(["Mara walked home through the snow."] * 8)
    meta, why = clean_pair("[ OT ] Meet and Greet", story, "1")
    assert meta is None and why == "meta post (OT)"
    for title in ("Meet and Greet : tell us about you", "Question of the Week : villains"):
        assert clean_pair(title, story, "1") == (None, "meta post (title)")
    assert clean_pair("[ WP ] Meet and greet with Death", story, "1")[0]  # a writing prompt
    raw = (
        f"{story}\n\n*====*\n\nThe end came.\n\nEdit: formatting\n\n(part 1/2, continued in reply)"
    )
    pair, _ = clean_pair("[ WP ] A walk", raw, "2")
    assert pair.story == f"{story}\n\nThe end came."


def test_links_keep_their_words_and_addresses_and_superscript_carets_go():
    from finetune.clean import paragraphs

    raw = (
        "A [ Spork ] ( http : //www.example.com/p/8ace/ ) , then ( https: //x.org/a ) rest . "
        "<newline> Song : https : //m.youtube.com/watch ? v=Rn_-Fg now . <newline> "
        "^more ^in [ ^my ^subreddit ] ( www.reddit.com/r/x ) ; 2^3 = 8"
    )
    assert paragraphs(raw) == [
        "A Spork, then rest.",
        "Song: now.",
        "more in my subreddit; 2^3 = 8",
    ]
    # what only looks like an address or a caret stays
    assert paragraphs("Awww . Wwww . ^_^ ( see http : //foo.com ) so") == [
        "Awww. Wwww. ^_^ (see) so"
    ]
    assert paragraphs("Been to www.example.com ? It was great .") == ["Been to? It was great."]


def test_arc_accuracy_scores_the_tagger_against_hand_labels(tmp_path, monkeypatch):
    import csv

    import finetune.gold as gold
    from tests.test_arcs import LEVELS, story_of

    monkeypatch.setattr(gold, "DEV_ROWS", 2)
    rows = [  # (row_id, story, hand label)
        (1, story_of(LEVELS["tragedy"]), "tragedy"),  # the tagger says tragedy: right
        (2, story_of(LEVELS["icarus"]), "unclear"),  # names an arc where none was seen: wrong
        (3, story_of(LEVELS["cinderella"]), "cinderella"),  # right
        (4, story_of(LEVELS["oedipus"]), "tragedy"),  # wrong
    ]
    data = tmp_path / "wp.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row_id", "prompt", "story", "completion"])
        for row_id, story, _ in rows:
            w.writerow([row_id, "[ WP ] A prompt", story, ""])
    labels = tmp_path / "gold.jsonl"
    lines = [json.dumps({"row_id": i, "arc": a, "confidence": "high"}) for i, _, a in rows]
    labels.write_text("\n".join(lines) + "\n")
    report = gold.arc_accuracy(labels, data)
    dev, held = report["development"], report["held_out"]
    assert (dev["stories"], dev["with_an_arc"], dev["arc_accuracy"]) == (2, 1, 1.0)
    assert dev["unclear_left_out"] == 0.0
    assert (held["with_an_arc"], held["arc_accuracy"], held["arc_precision"]) == (2, 0.5, 0.5)
    assert held["errors"] == [{"row_id": 4, "gold": "tragedy", "tagger": "oedipus"}]
    assert held["majority_accuracy"] == 0.5
    (tmp_path / "short.csv").write_text("row_id,prompt,story,completion\n1,p,s,\n")
    with pytest.raises(ValueError, match="lacks 3 labelled rows"):
        gold.arc_accuracy(labels, tmp_path / "short.csv")


def test_an_oath_is_not_a_setting():
    oaths = "What in the hell? Mara asked. What the hell is this. Hell, no. The hell with it."
    assert tag_story(oaths + " They walked through the city.").request.setting.place == "city"
    assert tag_story(oaths).request.setting.place == ""
    place = "They fell into hell. In hell, the fires burned. Hell was hot and the demons laughed."
    assert tag_story(place).request.setting.place == "hell"
    assert tag_story("For heaven's sake, Mara said. Good heavens.").request.setting.place == ""


def _originals(folder, splits=("train", "valid", "test")):
    """The fixture's original-release files, each split's stories made its own (in the fixture
    the three splits hold the same stories)."""
    folder.mkdir()
    for split in splits:
        src = (FIXTURES / "wp_original" / "train.wp_source").read_text().splitlines()
        tgt = (FIXTURES / "wp_original" / "train.wp_target").read_text().splitlines()
        own = [f"{t} <newline> The {split} copy ends here after all ." for t in tgt]
        (folder / f"{split}.wp_source").write_text("\n".join(src) + "\n")
        (folder / f"{split}.wp_target").write_text("\n".join(own) + "\n")
    return folder


def test_the_original_splits_are_kept_each_in_its_own_file(tmp_path):
    report = build(_originals(tmp_path / "wp"), tmp_path / "out", progress=False)
    for split in ("train", "valid", "test"):
        rows = read_examples(tmp_path / "out" / f"{split}.jsonl")
        assert len(rows) == getattr(report, split) == 4, split
        assert all(r["id"].startswith(f"{split}:") for r in rows)
    assert report.splits == {
        "valid": "the original valid split",
        "test": "the original test split",
        "train": "the original train split",
    }
    # One split by name: only its file (and the other two from an earlier run are removed).
    only = build(tmp_path / "wp", tmp_path / "out", split="test", progress=False)
    assert (only.train, only.valid, only.test) == (0, 0, 4)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "report.json",
        "test.jsonl",
        "train.jsonl",
        "valid.jsonl",
    ]
    assert read_examples(tmp_path / "out" / "train.jsonl") == []
    # A folder with the train split alone: valid and test are carved from it, seeded.
    carved = build(
        _originals(tmp_path / "train_only", ["train"]),
        tmp_path / "carved",
        valid_fraction=0.5,
        test_fraction=0.49,
        progress=False,
    )
    assert carved.train + carved.valid + carved.test == 4 and carved.valid and carved.test


def test_a_test_split_is_carved_without_moving_the_validation_rows(tmp_path):
    src = FIXTURES / "wp_hf.csv"
    before = build(src, tmp_path / "a", valid_fraction=0.3, progress=False)
    after = build(src, tmp_path / "b", valid_fraction=0.3, test_fraction=0.5, progress=False)
    assert not (tmp_path / "a" / "test.jsonl").exists()  # no test split asked for: no file
    valid = (tmp_path / "a" / "valid.jsonl").read_text()
    assert valid and (tmp_path / "b" / "valid.jsonl").read_text() == valid
    test = read_examples(tmp_path / "b" / "test.jsonl")
    assert len(test) == after.test > 0 and after.train == before.train - after.test
    assert after.splits["test"] == "50% of the train stories (seeded)"


def test_rows_held_out_by_id_go_to_test_and_nowhere_else(tmp_path):
    from finetune.build import held_out_rows

    src = FIXTURES / "wp_hf.csv"
    before = build(src, tmp_path / "a", valid_fraction=0.3, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    chosen = rows[0]["id"]
    listing = tmp_path / "held.jsonl"  # a labelled set's rows: only its held-out ones count
    listing.write_text(
        json.dumps({"id": f"wp:{chosen}", "split": "heldout"})
        + "\n"
        + json.dumps({"id": f"wp:{rows[1]['id']}", "split": "train"})
        + "\n"
    )
    assert held_out_rows(listing) == {chosen}
    after = build(src, tmp_path / "b", valid_fraction=0.3, hold_out={chosen}, progress=False)
    test = read_examples(tmp_path / "b" / "test.jsonl")
    assert [r["id"] for r in test] == [chosen] and after.train == before.train - 1
    assert "held out by id (1)" in after.splits["test"]
    others = read_examples(tmp_path / "b" / "train.jsonl") + read_examples(
        tmp_path / "b" / "valid.jsonl"
    )
    assert chosen not in {r["id"] for r in others}
    listing.write_text("{not json\n")
    with pytest.raises(DataError, match="cannot read the rows to hold out"):
        held_out_rows(listing)


def test_a_failed_preprocess_leaves_no_output_behind(tmp_path):
    bad = tmp_path / "bad.jsonl"
    good = (FIXTURES / "wp_hf.jsonl").read_text()
    bad.write_text(good * 40 + "{oops\n")  # fails after whole batches were written
    with pytest.raises(DataError, match="not valid JSON"):
        build(bad, tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()
    build(FIXTURES / "wp_hf.csv", tmp_path / "old", progress=False)
    kept = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}
    with pytest.raises(DataError):
        build(bad, tmp_path / "old", progress=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == kept
    with pytest.raises(DataError, match="an original split of a .wp folder"):
        build(FIXTURES / "wp_hf.csv", tmp_path / "x", split="test", progress=False)
    for fractions in ((1.0, 0.0), (0.6, 0.4), (-0.1, 0.0)):
        with pytest.raises(DataError, match="fraction"):
            build(
                FIXTURES / "wp_hf.csv",
                tmp_path / "x",
                *[],
                valid_fraction=fractions[0],
                test_fraction=fractions[1],
                progress=False,
            )
    assert not (tmp_path / "x").exists()


def test_preprocess_help_shows_every_default(capsys):
    from finetune.__main__ import main

    with pytest.raises(SystemExit):
        main(["preprocess", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("runs/data", "all", "0.1", "0.0", "1000"):
        assert f"(default: {default})" in text, default


def test_a_limit_applies_to_each_original_split_and_an_odd_wp_file_is_train(tmp_path):
    wp = _originals(tmp_path / "wp")
    small = build(wp, tmp_path / "small", limit=5, progress=False)
    assert small.read == 15 and small.valid and small.test  # 5 pairs of each split
    (tmp_path / "mine").mkdir()
    for ext in ("wp_source", "wp_target"):
        (tmp_path / "mine" / f"stories.{ext}").write_text((wp / f"train.{ext}").read_text())
    report = build(tmp_path / "mine" / "stories.wp_source", tmp_path / "o", progress=False)
    assert report.kept == 4 and report.splits["train"] == "the rest"


def test_field_accuracy_on_real_rows_reads_them_by_id_and_gives_the_majority_baseline(tmp_path):
    import csv

    import finetune.gold as gold

    filler = " The night was long and nobody spoke for a while, and then the rain came down again."
    stories = {
        7: "I walked into the bar and ordered a drink. Mara poured it. Mara smiled at me." + filler,
        8: "Isolde walked into the castle at dawn. Isolde drew her sword and waited." + filler,
        9: "[ OT ] Meet and greet: tell us about yourself!",  # a meta post preprocessing drops
    }
    data = tmp_path / "wp.csv"
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row_id", "prompt", "story", "completion"])
        for row_id, story in stories.items():
            prompt = "[ OT ] Meet and greet" if row_id == 9 else "[ WP ] A prompt"
            w.writerow([row_id, prompt, story, ""])
    base = {"genre": "", "tone": "", "ending": "", "characters": [], "place": ""}
    rows = [
        {**base, "row_id": 7, "pov": "first person", "place": "bar", "characters": ["Mara"]},
        {**base, "row_id": 8, "pov": "first person", "place": "castle"},  # the pov is wrong
        {**base, "row_id": 9, "pov": "first person"},
    ]
    labels = tmp_path / "gold.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = gold.wp_field_accuracy(labels, data)
    assert report["stories"] == 2 and report["dropped_by_preprocessing"] == [9]
    assert report["pov_accuracy"] == 0.5 and report["place_accuracy"] == 1.0
    assert report["pov_majority"] == {"label": "first person", "accuracy": 1.0}
    assert {"row_id": 8, "field": "pov", "gold": "first person", "tagger": "third person"} in (
        report["errors"]
    )
    assert report["character_recall"] == 1.0  # Mara found; story 8 was labelled with none
    assert report["character_precision"] < 1.0  # ... so the names found there count against


def test_a_change_to_cleaning_moves_no_story_between_splits(tmp_path, monkeypatch):
    """The split is keyed on the raw prompt and story, so changing how stories are cleaned
    (here: every story gains a sentence) leaves every story in its split."""
    import finetune.build as b

    def splits(out):
        build(FIXTURES / "wp_hf.csv", out, valid_fraction=0.4, progress=False)
        return {
            r["id"]: name
            for name in ("train", "valid")
            for r in read_examples(out / f"{name}.jsonl")
        }

    before = splits(tmp_path / "a")
    real = b.clean_pair

    def cleaned_otherwise(*args, **kwargs):
        pair, why = real(*args, **kwargs)
        if pair is not None:
            pair.story += " And that was that."
        return pair, why

    monkeypatch.setattr(b, "clean_pair", cleaned_otherwise)
    after = splits(tmp_path / "b")
    assert after == before and set(before.values()) == {"train", "valid"}
    rows = read_examples(tmp_path / "b" / "train.jsonl")
    assert all(r["completion"].rstrip().endswith("that was that.") for r in rows)


def test_training_tags_come_from_the_validated_judges_and_leave_out_the_unmeasured(tmp_path):
    """Genre, tone and point of view are the judges' reading of each story (before field
    dropout); the ending and the arc, whose judges are not measured, are never tagged."""
    from finetune.clean import clean_pair
    from finetune.data import iter_pairs
    from storygen.judges import CannotJudge, judges

    report = build(
        FIXTURES / "wp_hf.csv", tmp_path, valid_fraction=0.0, field_dropout=0.0, progress=False
    )
    rows = {r["id"]: r for r in read_examples(tmp_path / "train.jsonl")}
    assert "storygen.judges" in report.to_dict()["tags"]["genre, tone, pov"]
    checked = 0
    for raw in iter_pairs(FIXTURES / "wp_hf.csv"):
        pair, _ = clean_pair(raw.prompt, raw.story, raw.source_id)
        if pair is None or raw.source_id not in rows:
            continue
        request = rows[raw.source_id]["request"]
        assert request["ending"] == "" and request["arc"] == ""
        try:
            want = judges().labels(pair.story)
        except CannotJudge:
            want = {}
        assert {k: request[k] for k in ("genre", "tone", "pov")} == {
            k: want.get(k, "") for k in ("genre", "tone", "pov")
        }
        checked += 1
    assert checked >= 3


def _model_stories(path, rows, writer, extra_prompt="[ WP ] A prompt only the models answered ."):
    """A model's CSV for the fixture's prompts, under ids of its own (so that a split must
    follow the prompt, not the id): its own stories, each under a title line, one more for a
    prompt the fixture lacks, an empty story and a 50,000-character one."""
    import csv

    story = (
        f"Title: The Quiet Answer\n\nMira opened the door and the wind came in ({writer}). She "
        "had waited for this letter for years, and now it lay on the floor, wet and torn. She "
        "read it twice. Then she laughed, because it said nothing at all, and went to find her "
        "brother."
    )
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["row_id", "prompt", "story", "writer"])
        for row in rows:
            w.writerow([f"m{row['row_id']}", row["prompt"], story + f" ({row['row_id']})", writer])
        w.writerow(["900", extra_prompt, story, writer])
        w.writerow(["901", extra_prompt + " Again", "", writer])
        w.writerow(["902", extra_prompt + " Long", "word. " * 8400, writer])


@pytest.mark.parametrize("workers", [1, 2])
def test_a_data_mix_keeps_each_prompt_in_one_split_and_names_every_writer(tmp_path, workers):
    import csv

    primary = FIXTURES / "wp_hf.csv"
    rows = list(csv.DictReader(primary.open()))
    for writer in ("gpt-x", "gpt-y"):
        _model_stories(tmp_path / f"{writer}.csv", rows, writer)
    mix = tmp_path / "mix.yaml"  # paths relative to the mix file
    mix.write_text(
        f"sources:\n  - {{path: {primary}, writer: reddit, model_written: false}}\n"
        "  - {path: gpt-x.csv, writer: gpt-x, model_written: true}\n"
        "  - {path: gpt-y.csv, writer: gpt-y, model_written: true}\n"
    )
    settings = {"valid_fraction": 0.3, "test_fraction": 0.3, "progress": False}
    build(primary, tmp_path / "alone", **settings)
    held = rows[-1]["row_id"]
    report = build(mix, tmp_path / "mix", **settings, hold_out={held}, workers=workers)
    out = {n: read_examples(tmp_path / "mix" / f"{n}.jsonl") for n in ("train", "valid", "test")}
    split_of = {r["id"]: name for name, got in out.items() for r in got}
    # The primary's stories are split exactly as they are alone (but the one held out).
    for name in ("train", "valid", "test"):
        ids = {r["id"] for r in read_examples(tmp_path / "alone" / f"{name}.jsonl")} - {held}
        assert ids == {i for i, s in split_of.items() if ":" not in i and s == name} - {held}
    assert split_of[held] == "test"
    # Every story of a prompt is in one split, whoever wrote it and whatever its own draw:
    # the primary's, or for the prompt only the models answered, the first model's.
    by_prompt = {}
    for name, got in out.items():
        for r in got:
            by_prompt.setdefault(r["request"]["prompt"], set()).add(name)
    assert all(len(splits) == 1 for splits in by_prompt.values()), by_prompt
    assert split_of[f"gpt-x:m{held}"] == split_of[f"gpt-y:m{held}"] == "test"
    assert split_of["gpt-x:900"] == split_of["gpt-y:900"]
    # Drawn alone, some model stories would have gone elsewhere than their prompt: the rule acts.
    build(tmp_path / "gpt-x.csv", tmp_path / "x-alone", **settings)
    alone_x = {
        r["id"]: n
        for n in ("train", "valid", "test")
        for r in read_examples(tmp_path / "x-alone" / f"{n}.jsonl")
    }
    assert any(split_of[f"gpt-x:{i}"] != n for i, n in alone_x.items())
    examples = [r for got in out.values() for r in got]
    assert {r["writer"] for r in examples} == {"reddit", "gpt-x", "gpt-y"}
    model_rows = [r for r in examples if r["writer"] != "reddit"]
    assert all(r["id"].split(":")[0] in ("gpt-x", "gpt-y") for r in model_rows)
    assert not any("Title:" in r["completion"] for r in model_rows)  # the header line goes
    # The empty story is dropped and counted; the 50,000-character one is cut to the budget.
    alone_report = json.loads((tmp_path / "alone" / "report.json").read_text())
    assert report.dropped["empty or removed story"] == (
        alone_report["dropped"].get("empty or removed story", 0) + 2
    )
    assert all(r["words"] <= 1000 for r in examples) and "gpt-x:902" in split_of
    mixed = report.to_dict()["mix"]
    by = {s["writer"]: s for s in mixed["sources"]}
    assert by["gpt-x"]["read"] == len(rows) + 3 and by["reddit"]["read"] == len(rows)
    assert sum(s["train"] for s in mixed["sources"]) == report.train
    share = (by["gpt-x"]["train"] + by["gpt-y"]["train"]) / report.train
    assert mixed["model_written_share"]["train stories"] == round(share, 3)
    saved = json.loads((tmp_path / "mix" / "report.json").read_text())
    assert saved["mix"]["sources"][1]["model_written"] is True


def test_a_mix_source_can_keep_only_the_primary_prompts(tmp_path):
    import csv

    primary = FIXTURES / "wp_hf.csv"
    rows = list(csv.DictReader(primary.open()))
    _model_stories(tmp_path / "m.csv", rows, "gpt-x")
    mix = tmp_path / "mix.yaml"
    mix.write_text(
        f"sources:\n  - {{path: {primary}, writer: reddit, model_written: false}}\n"
        "  - {path: m.csv, writer: gpt-x, model_written: true, same_prompts: true}\n"
    )
    report = build(mix, tmp_path / "out", valid_fraction=0.3, progress=False)
    ids = {
        r["id"] for n in ("train", "valid") for r in read_examples(tmp_path / "out" / f"{n}.jsonl")
    }
    assert "gpt-x:900" not in ids and "gpt-x:902" not in ids
    # 900 and 902 (901 is empty), and the stories of prompts whose Reddit story was dropped
    assert report.dropped["prompt not in reddit's"] >= 2
    kept = [r for n in ("train", "valid") for r in read_examples(tmp_path / "out" / f"{n}.jsonl")]
    prompts = {r["request"]["prompt"] for r in kept if r["writer"] == "reddit"}
    assert all(r["request"]["prompt"] in prompts for r in kept)


@pytest.mark.parametrize(
    "sources, message",
    [
        ("  - {path: MISSING, writer: a, model_written: false}\n", "does not exist"),
        ("  - {path: PRIMARY, writer: a}\n", "must have path, writer and model_written"),
        ("  - {path: PRIMARY, writer: a, model_written: false, x: 1}\n", "must have path"),
        ("  - {path: PRIMARY.wp_source, writer: a, model_written: false}\n", "CSV, JSONL"),
        ("  - {path: PRIMARY, writer: a, model_written: maybe}\n", "true or false"),
        (
            "  - {path: PRIMARY, writer: a, model_written: false}\n"
            "  - {path: PRIMARY, writer: a, model_written: true}\n",
            "unique",
        ),
        ("[]\n", "non-empty list"),
    ],
)
def test_a_bad_data_mix_is_refused_before_anything_is_written(tmp_path, sources, message):
    mix = tmp_path / "mix.yaml"
    body = sources.replace("MISSING", str(tmp_path / "nope.csv"))
    body = body.replace("PRIMARY", str(FIXTURES / "wp_hf.csv"))
    mix.write_text(("sources:\n" + body) if not body.startswith("[") else "sources: []\n")
    with pytest.raises(DataError, match=message):
        build(mix, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
