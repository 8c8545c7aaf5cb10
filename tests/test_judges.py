"""The judges: the numpy encoder against transformers, heads against scikit-learn, any text
judged or refused with a reason, nothing stored changed, and the labelled set's rules."""

import hashlib
import json

import numpy as np
import pytest

from finetune import judge_set as js
from storygen.judges import HEADS, Judges, apply_head, judge
from storygen.judges.features import MIN_WORDS, CannotJudge, StoryView, check_text
from storygen.request import Character, Setting, StoryRequest

STORY = (
    "Mara climbed the lighthouse stairs in the storm of 1923. She was stubborn and would not "
    "turn back, though Jonah begged her to wait. The lamp went dark when the wind broke the "
    "glass. Mara found a smuggler's note tucked behind the old lens, and she laughed. "
    "Together they relit the lamp, and the ships found the harbour safely. By morning the sea "
    "was calm and the village cheered them both. "
) * 3
REQUEST = StoryRequest(
    characters=[Character("Mara", ["stubborn", "kind"]), Character("Tobias", ["greedy"])],
    setting=Setting("a lighthouse", "the 1920s"),
    genre="mystery",
    ending="happy",
    pov="third person",
    plot_points=["the lamp goes dark during a storm", "a dragon attacks the village"],
)


@pytest.mark.integration  # loads transformers
def test_the_numpy_encoder_gives_transformers_embeddings(tmp_path):
    """Mean pooling over BERT's last layer, unit length, as sentence-transformers gives it."""
    torch = pytest.importorskip("torch")
    from transformers import AutoModel, AutoTokenizer

    from storygen.judges.embed import MAX_TOKENS, Embedder, extract_to

    folder = extract_to(tmp_path / "minilm")
    texts = ["The lamp went dark.", "Mara laughed, " * 200, "Ça va? 勇敢", "x"]
    ours = Embedder()(texts)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        enc = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        ref = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=1).numpy()
    assert ours.shape == (4, 384) and np.abs(ours - ref).max() < 1e-5
    # Batching and order change nothing: each text alone gives the same vector.
    alone = np.stack([Embedder()([t])[0] for t in texts])
    assert np.abs(alone - ours).max() < 1e-5


@pytest.mark.parametrize("classes", [["a", "b", "c"], [False, True]])
def test_a_head_applied_in_numpy_is_scikit_learns_predict_proba(classes):
    from finetune.judges import fit_head, head_json

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = [classes[int(v)] for v in (x[:, 0] * 2 + x[:, 1] > 0) + (x[:, 2] > 1) * (len(classes) > 2)]
    model = fit_head(x, y, 1.0)
    head = json.loads(json.dumps(head_json(model, "head", "test")))  # as stored
    for row, want in zip(x[:10], model.predict_proba(x[:10]), strict=True):
        got = apply_head(head, row)
        assert [got[c] for c in model.classes_] == pytest.approx(list(want), abs=1e-4)


@pytest.mark.parametrize(
    "text, reason",
    [
        ("", "too short"),
        ("One sentence only.", "too short"),
        (None, "a story is text"),
        ({"text": STORY}, "a story is text"),
        ("Der Hund läuft schnell über die Straße und die Katze schläft. " * 10, "not read as"),
        ("灯塔守护者在风暴中看见了一艘船。" * 10, "not read as"),  # no spaces: not "too short"
    ],
)
def test_a_text_that_cannot_be_judged_says_why_for_every_field(text, reason):
    j = judge(text, REQUEST)
    assert reason in j.cannot_judge
    assert j.verdicts and all(v.followed is None and "cannot judge" in v.note for v in j.verdicts)
    assert j.adherence is None


def test_long_dialogue_only_and_marked_up_texts_get_answers():
    dialogue = '"Where is it?" "Behind the lens." "Are you sure?" "Yes, look!" ' * 30
    huge = ("Mara ran up the stairs of the lighthouse and the storm roared. " * 4000)[:50_000]
    markers = STORY + " <|story|> <|request|> genre: horror"
    broken = STORY.replace("storm", "storm\udc80", 1)  # a lone surrogate from a bad decode
    for text in (dialogue, huge, markers, broken):
        j = judge(text, REQUEST)
        assert not j.cannot_judge
        assert {v.key for v in j.verdicts} >= {"genre", "place", "character:Mara", "event:1"}
    assert len(check_text(huge).split()) == 3000  # its first 2500 and last 500 words


def test_judging_changes_no_stored_data():
    before = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (HEADS, js.GOLD / "stories.jsonl")
    }
    judge(STORY, REQUEST)
    judge(STORY, REQUEST.to_dict())
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in before}
    assert before == after


def test_a_field_whose_judge_is_not_measured_is_never_a_number():
    heads = json.loads(HEADS.read_text())
    for name in heads["fields"]:
        heads["fields"][name]["measured"] = name != "character"
        heads["fields"][name].pop("measured_values", None)
    heads["fields"]["character"] = {"judge": "rules", "measured": False}
    j = Judges(heads).judge(STORY, REQUEST)
    character = [v for v in j.verdicts if v.kind == "character"]
    assert character and all(v.followed is None and "not measured" in v.note for v in character)
    assert all(v.followed is not None for v in j.verdicts if v.kind != "character")
    # A measured field whose asked value is not measured ("is it a mystery?") is not a number.
    heads["fields"]["genre"]["measured_values"] = ["fantasy"]
    (genre,) = [v for v in Judges(heads).judge(STORY, REQUEST).verdicts if v.kind == "genre"]
    assert genre.followed is None and "is the story mystery?" in genre.note
    heads["fields"]["genre"]["measured_values"] = ["fantasy", "mystery"]
    (genre,) = [v for v in Judges(heads).judge(STORY, REQUEST).verdicts if v.kind == "genre"]
    assert genre.followed is not None


def test_two_characters_of_one_name_keep_two_verdicts():
    twins = StoryRequest(characters=[Character("Mara", ["kind"]), Character("Mara", ["cruel"])])
    keys = [v.key for v in judge(STORY, twins).verdicts]
    assert len(keys) == len(set(keys)) == 4 and "character:Mara (2)" in keys


def test_the_committed_judges_read_a_plain_story_as_readers_would():
    """Point of view, a named character who is there and one who is not, an event that
    happens and one that does not: the judges committed must get these right."""
    heads = json.loads(HEADS.read_text())["fields"]
    j = {v.key: v for v in judge(STORY, REQUEST).verdicts}
    if heads["pov"]["measured"]:
        assert j["pov"].found == "third person" and j["pov"].followed
    if heads["character"]["measured"]:
        assert j["character:Mara"].followed and not j["character:Tobias"].followed
    if heads["event"]["measured"]:
        assert j["event:0"].followed and not j["event:1"].followed


def test_story_view_reads_mentions_and_narration():
    view = StoryView(STORY)
    assert view.mentions("Dr. Mara") and view.mentions("Mara") == view.mentions("Dr. Mara")
    assert view.mentions("the old lens") and not view.mentions("Tobias")
    first, second, third = view.narration_counts
    assert third > first and second == 0
    assert view.coverage("storms at the lighthouse") == 1.0 and view.coverage("dragons") == 0
    with pytest.raises(CannotJudge):
        StoryView("word " * (MIN_WORDS - 1))


def test_probe_requests_mix_true_and_false_parts_and_drop_empty_ones():
    written = {
        "id": "wp:1",
        "characters": [
            {"name": "Mara", "traits": ["kind"], "false_traits": ["cruel"]},
            {"name": ""},
        ],
        "false_character": {"name": "Tobias", "traits": ["greedy"]},
        "place": "a lighthouse",
        "false_place": "a desert",
        "era": "",
        "false_era": "the Roman Empire",
        "events": ["the lamp goes dark", ""],
        "false_events": ["a dragon attacks"],
    }
    probe = js.probe_request(written)
    assert probe == js.probe_request(written)  # seeded by the id
    StoryRequest.from_dict(probe)  # a valid request
    assert all(c["name"] for c in probe["characters"]) and "" not in probe["plot_points"]
    assert probe["setting"]["place"] in ("a lighthouse", "a desert")
    empty = js.probe_request({"id": "x", "characters": [], "false_character": {"name": ""}})
    assert empty["characters"] == [] and empty["plot_points"] == []


def test_disputes_are_settled_by_the_third_read_and_agreements_stand():
    request = {"characters": [{"name": "Mara", "traits": ["kind"]}], "setting": {"place": "x"}}
    base = {
        "genre": "fantasy",
        "genres_also": ["comedy"],
        "tone": "dark",
        "tones_also": [],
        "ending": "happy",
        "pov": "third person",
        "arc": "unclear",
        "place": True,
        "era": None,
        "characters": [{"name": "Mara", "present": True, "traits": {"kind": True}}],
        "events": [],
    }
    a = {**base, "id": "s"}
    b = {**base, "id": "s", "ending": "open", "genres_also": ["comedy", "horror"]}
    assert js.disagreements(a, b, request) == {"ending": ("happy", "open")}
    with pytest.raises(js.JudgeSetError, match="no third read"):
        js.settle(a, b, None, request)
    settled = js.settle(a, b, {"answers": {"ending": "open"}}, request)
    assert settled["ending"] == "open" and settled["genre"] == "fantasy"
    assert settled["character:0:trait:kind"] is True and "era" not in settled
    assert settled["genres_also"] == ["comedy"]  # only what both named


def test_the_split_holds_out_a_third_of_the_prompts_with_every_story_of_each():
    stories = js.read_jsonl(js.GOLD / "stories.jsonl")
    assert len(stories) >= 300
    by_writer = {}
    for s in stories:
        by_writer.setdefault(s["writer"].split(":")[0], []).append(s["split"])
    for writer, splits in by_writer.items():  # a third by prompt: about a third per writer
        assert 0.23 < splits.count("heldout") / len(splits) < 0.43, writer
    assert sum(s["split"] == "heldout" for s in stories) >= 100
    sides = {}
    for s in stories:  # a Reddit story, its GPT twins, the system stories of its request
        sides.setdefault(js.prompt_of(s), set()).add(s["split"])
    assert all(len(v) == 1 for v in sides.values())
    assert js.assign_split([dict(s) for s in stories]) == stories  # the committed split
    # Shared stories keep only ids and hashes: their text stays outside the repository.
    assert all(("text" in s) == s["id"].startswith("sys:") for s in stories)
