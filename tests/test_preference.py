"""Preference tuning on the tiny model: DPO and KTO from an SFT adapter, lineage, loading."""

import csv
import json
import shutil
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from finetune.build import build
from finetune.config import TrainConfig
from finetune.preference import PreferenceConfig, PreferenceDataError, tune
from finetune.train import train
from storygen.config import ModelSpec
from storygen.loading import load_model, read_adapter_meta, weights_sha256

from .conftest import FIXTURES

PROMPT = "<|request|>\ngenre: mystery\n<|story|>\n"


@pytest.fixture(scope="module")
def sft(tiny_model_dir, tmp_path_factory):
    """A tiny SFT adapter: the parent the preference tuning starts from."""
    tmp = tmp_path_factory.mktemp("sft")
    build(FIXTURES / "wp_hf.csv", tmp / "data", valid_fraction=0.0, progress=False)
    (tmp / "data" / "valid.jsonl").write_text((tmp / "data" / "train.jsonl").read_text())
    cfg = TrainConfig(
        data_dir=str(tmp / "data"),
        output_dir=str(tmp / "sft"),
        base=str(tiny_model_dir),
        quantization="fp32",
        max_length=384,
        batch_size=2,
        grad_accum=1,
        max_steps=2,
        eval_steps=1,
        save_steps=1,
        gradient_checkpointing=False,
        name="tiny-sft",
    )
    train(cfg, progress=False)
    return tmp / "sft"


def _cfg(tiny_model_dir, sft, tmp_path, **kw):
    return PreferenceConfig(
        **{
            "parent": str(sft),
            "base": str(tiny_model_dir),
            "data_dir": str(tmp_path / "prefer"),
            "output_dir": str(tmp_path / "tuned"),
            "quantization": "fp32",
            "max_steps": 4,
            "batch_size": 2,
            "grad_accum": 1,
            "eval_steps": 2,
            "save_steps": 2,
            "max_length": 64,
            "learning_rate": 1e-3,
            "held_out": 0.25,
            "name": "tiny-dpo",
            **kw,
        }
    )


def test_dpo_moves_the_adapter_towards_the_chosen_stories_and_records_its_lineage(
    tiny_model_dir, sft, tmp_path, monkeypatch
):
    (tmp_path / "prefer").mkdir()
    rows = [
        {"prompt": PROMPT, "chosen": f"Mara ran to the sea {i}.", "rejected": f"qq zz xx {i} vv."}
        for i in range(16)
    ]
    (tmp_path / "prefer" / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # QLoRA: the NF4 base, as on the real model (TRL leaves bf16 adapter weights; saved fp16).
    # The parent is named relative to the working folder; the lineage keeps it so.
    monkeypatch.chdir(sft.parent)
    cfg = _cfg(tiny_model_dir, sft, tmp_path, quantization="nf4", parent=sft.name)
    metrics = tune(cfg, progress=False)
    out = tmp_path / "tuned"
    assert metrics["steps"] == 4 and metrics["held_out_examples"] > 0
    assert metrics["eval_rewards_margins"] > 0 and metrics["eval_rewards_accuracies"] > 0.5
    meta = read_adapter_meta(out)
    assert meta["lineage"]["parent"] == "tiny-sft" and meta["lineage"]["method"] == "dpo"
    assert meta["lineage"]["parent_adapter"] == sft.name  # as given to tune
    assert meta["lineage"]["parent_dir"] == sft.name  # the folder it was read from
    assert meta["lineage"]["parent_sha256"] == weights_sha256(sft)
    assert meta["lineage"]["train_examples"] + meta["lineage"]["held_out_examples"] == 16
    assert len(meta["lineage"]["data_sha256"]) == 64
    assert meta["base_model"] == read_adapter_meta(sft)["base_model"]
    parent, child = (
        load_file(sft / "adapter_model.safetensors"),
        load_file(out / "adapter_model.safetensors"),
    )
    assert parent.keys() == child.keys()  # the parent's adapter, trained further, not a new one
    assert all(v.dtype == torch.float16 for v in child.values())
    assert any(not torch.equal(parent[k].float(), child[k].float()) for k in parent)
    with (out / "preference_curve.csv").open() as f:
        curve = list(csv.DictReader(f))
    assert [int(r["step"]) for r in curve if r["loss"]] == [1, 2, 3, 4]
    assert sum(bool(r["eval_rewards_accuracies"]) for r in curve) == 2
    assert (out / "preference_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "adapter_model.gguf").exists() and not (out / "checkpoints").exists()
    # It loads wherever an adapter loads.
    lm = load_model(ModelSpec(base=str(tiny_model_dir), adapter=str(out), quantization="fp32"))
    assert lm.adapter_meta["name"] == "tiny-dpo"
    # And goes into the arena against its parent: A/B items for the Rate tab.
    from human_ratings.__main__ import main
    from human_ratings.pairs import load_items, load_systems

    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"genre": "mystery"}\n{"genre": "horror", "prompt": "a key"}\n')
    arena = tmp_path / "arena"
    args = ["arena", str(out), str(requests), "--base", str(tiny_model_dir), "--out", str(arena)]
    assert main([*args, "--max-new-tokens", "8"]) == 0
    items = load_items(arena / "pairs.jsonl")
    assert len(items) == 2 and all(set(it.stories) == {"tiny-sft", "tiny-dpo"} for it in items)
    systems = {s.name: s.model.adapter for s in load_systems(arena / "systems.yaml")}
    assert systems == {"tiny-sft": sft.name, "tiny-dpo": str(out)}
    assert main(["arena", str(sft), str(requests), "--out", str(tmp_path / "x")]) == 2  # no parent


def test_kto_learns_from_unpaired_thumbs_and_refuses_one_sided_data(tiny_model_dir, sft, tmp_path):
    (tmp_path / "prefer").mkdir()
    rows = [
        {
            "prompt": PROMPT,
            "completion": f"Mara ran {i}." if i % 2 else f"qq zz {i}.",
            "label": i % 2 == 1,
        }
        for i in range(16)
    ]
    path = tmp_path / "prefer" / "unpaired.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = tune(_cfg(tiny_model_dir, sft, tmp_path, method="kto"), progress=False)
    assert (
        metrics["steps"] == 4
        and read_adapter_meta(tmp_path / "tuned")["lineage"]["method"] == "kto"
    )
    path.write_text("".join(json.dumps({**r, "label": True}) + "\n" for r in rows))
    with pytest.raises(PreferenceDataError, match="both liked and disliked"):
        tune(_cfg(tiny_model_dir, sft, tmp_path, method="kto", output_dir=str(tmp_path / "k2")))
    with pytest.raises(PreferenceDataError, match="run `python -m finetune prefer` first"):
        tune(_cfg(tiny_model_dir, sft, tmp_path, data_dir=str(tmp_path / "none")))


def plain_judge(request, story: str) -> dict[str, bool]:
    """A stand-in for the judges, for stories a tiny model writes (too short for the real
    ones): a name is there, and the rule tagger's point of view and ending."""
    from storygen.tagger import ending, pov

    out = {f"character:{c.name}": c.name in story for c in request.characters}
    if request.ending:
        out["ending"] = ending(story) == request.ending
    if request.pov:
        out["pov"] = pov(story) == request.pov
    return out


@pytest.fixture
def rule_judge(monkeypatch):
    """The feedback loop's rule judged by :func:`plain_judge` (the loop is what is tested)."""
    import study.feedback as fb

    monkeypatch.setattr(fb, "check", plain_judge)
    monkeypatch.setattr(fb, "judged_fields", lambda request: list(plain_judge(request, "")))


def test_the_simulated_feedback_loop_runs_end_to_end(tiny_model_dir, sft, tmp_path, rule_judge):
    """Scripted votes on A/B items of the adapter, preference data, DPO, then child against
    parent on held-out items: every step's output is there and says what it is. The rule here
    counts ending and point of view only: a request without them makes no item."""
    from eval.compare import load_test_set
    from human_ratings.pairs import load_items
    from human_ratings.store import VoteStore
    from storygen.request import StoryRequest
    from study.config import StudyError
    from study.feedback import FeedbackConfig, adherence_of, rule_checks, run_feedback

    parent = tmp_path / "parent"  # a copy: the test changes its weights at the end
    shutil.copytree(sft, parent)
    requests = tmp_path / "requests.jsonl"
    asks = [
        {"genre": g, "pov": p, "ending": e, "tone": t}
        for g, p, e, t in [
            ("mystery", "first person", "happy", "dark"),
            ("horror", "third person", "sad", "hopeful"),
            ("romance", "first person", "happy", "humorous"),
            ("fantasy", "third person", "open", "dark"),
        ]
    ] * 3
    asks.insert(5, {"genre": "horror"})  # nothing the rule counts
    requests.write_text("".join(json.dumps(a) + "\n" for a in asks))
    build(FIXTURES / "wp_hf.csv", tmp_path / "test", valid_fraction=0.0, progress=False)
    test_set = tmp_path / "test" / "train.jsonl"
    held_out = [json.loads(line) for line in test_set.open()]
    held_out[1]["request"].update(pov="", ending="")  # a held-out request the rule cannot judge
    test_set.write_text("".join(json.dumps(r) + "\n" for r in held_out))
    cfg = FeedbackConfig(
        requests=str(requests),
        test=str(test_set),
        adapter=str(parent),
        base=str(tiny_model_dir),
        requests_limit=12,  # the first 12 the rule judges: all but the horror request
        test_limit=3,
        samples=3,
        rule_fields=["pov", "ending"],
        test_samples=2,
        sampling={"max_new_tokens": 24, "temperature": 1.2},
        tune={
            "quantization": "fp32",
            "max_steps": 2,
            "batch_size": 1,
            "grad_accum": 1,
            "max_length": 96,
            "held_out": 0.0,
            "learning_rate": 1e-3,
            "name": "tiny-loop",
        },
    )
    result = run_feedback(cfg, tmp_path / "loop", progress=False)
    votes = result["votes"]
    assert sum(votes.values()) == 12 and votes["left"] + votes["right"] >= 1
    assert result["preference_data"]["total_pairs"] == votes["left"] + votes["right"]
    assert result["tune"]["steps"] == 2 and result["held_out_items"] == 3
    d = result["adherence_difference"]
    assert d["n_items"] == 2 and d["difference"] == pytest.approx(
        result["adherence"]["child"] - result["adherence"]["parent"]
    )
    assert result["simulation"].startswith(
        "a scripted annotator (higher request adherence wins, counting ending and pov fields"
    )
    items = [json.loads(line) for line in (tmp_path / "loop" / "items.jsonl").open()]
    assert len(items) == 12 and all(len(i["stories"]) == 2 for i in items)
    horror = StoryRequest(genre="horror")
    assert horror not in [StoryRequest.from_dict(i["request"]) for i in items]
    # Each vote goes to the side whose story follows more of the rule's fields.
    by_id = {i.item_id: i for i in load_items(tmp_path / "loop" / "items.jsonl")}
    for v in VoteStore(tmp_path / "loop" / "votes.csv").votes():
        item = by_id[v.item_id]
        a, b = (
            adherence_of(item.request, item.stories[s]["text"], cfg.rule_fields)
            for s in (v.system_left, v.system_right)
        )
        assert v.choice == ("left" if a > b else "right" if b > a else "tie")
    # In the check, two stories per judged request and system, each judged on the rule's fields,
    # with the same seeds for parent and child; the unjudged request gets perplexity only.
    tests = {t["id"]: t["request"] for t in load_test_set(test_set, 3)}
    rows = [json.loads(line) for line in (tmp_path / "loop" / "per_item.jsonl").open()]
    assert len(rows) == 6 and all(r["tokens"] > 0 for r in rows)
    assert result["judged_items"] == sum(map(cfg.judges, tests.values())) == 2
    for row in rows:
        fields = len(rule_checks(tests[row["id"]], "", cfg.rule_fields))
        assert row["asked"] == (2 * fields if fields else None)
        assert row["hits"] is None or 0 <= row["hits"] <= row["asked"]
        assert row["hits"] is None or 0 <= row["other_hits"] <= row["other_asked"]
        others = len(plain_judge(tests[row["id"]], "")) - fields
        assert row.get("other_asked") == (2 * others if fields else None)
    for name in ("parent", "child"):  # the figures are the rows' pooled shares
        mine = [r for r in rows if r["system"] == name and r["asked"] is not None]
        pooled = {
            k: sum(r[k] for r in mine) for k in ("hits", "asked", "other_hits", "other_asked")
        }
        assert result["adherence"][name] == pooled["hits"] / pooled["asked"]
        assert (
            result["adherence_other_fields"][name] == pooled["other_hits"] / pooled["other_asked"]
        )
    seeds = {(r["system"], r["id"]): r.get("seeds") for r in rows}
    assert all(seeds["parent", i] == seeds["child", i] for i in tests)
    check_seeds = [s for i in tests for s in seeds["parent", i] or []]
    item_seeds = {f"seed-{s}" for s in check_seeds} & {n for i in items for n in i["stories"]}
    assert len(set(check_seeds)) == len(check_seeds) == 4 and not item_seeds
    assert (tmp_path / "loop" / "tuned" / "storygen_adapter.json").exists()
    saved = json.loads((tmp_path / "loop" / "feedback.json").read_text())
    assert saved["ppl_change"] == pytest.approx(result["ppl_change"])
    # A second round into the same folder would mix its votes with these: refused up front.
    with pytest.raises(StudyError, match="holds a round already"):
        run_feedback(cfg, tmp_path / "loop", progress=False)
    # The check alone, again: the same seeds give the same stories, so the same figures.
    for written in ("feedback.json", "per_item.jsonl"):
        (tmp_path / "loop" / written).unlink()
    again = run_feedback(cfg, tmp_path / "loop", progress=False, check_only=True)
    assert again == json.loads(json.dumps(result)) == saved
    assert [json.loads(line) for line in (tmp_path / "loop" / "per_item.jsonl").open()] == rows
    with pytest.raises(StudyError, match="holds no tuned adapter to check"):
        run_feedback(cfg, tmp_path / "none", progress=False, check_only=True)
    # ... but only as the round ran: not with other settings, nor once the parent has changed.
    with pytest.raises(StudyError, match=r"ran with other settings than this config \(samples\)"):
        run_feedback(replace(cfg, samples=4), tmp_path / "loop", progress=False, check_only=True)
    with (parent / "adapter_model.safetensors").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(StudyError, match="is not the adapter it was tuned from"):
        run_feedback(cfg, tmp_path / "loop", progress=False, check_only=True)
    with pytest.raises(StudyError, match="no request sets a field the rule counts"):
        run_feedback(replace(cfg, rule_fields=["era"]), tmp_path / "era", progress=False)


def test_the_feedback_item_is_the_rules_best_and_worst_story(rule_judge):
    from human_ratings.pairs import Item
    from storygen.request import Character, StoryRequest
    from study.feedback import FeedbackConfig, adherence_of, extreme_pair, scripted_choice

    request = StoryRequest(characters=[Character("Mara"), Character("Jonah")], pov="first person")
    stories = {
        "seed-1": {"text": "Mara and Jonah walked. I saw them, I did."},  # both names, first person
        "seed-2": {"text": "Nobody walked. He saw it."},  # nothing asked for
        "seed-3": {"text": "Mara walked. He saw her."},  # one name
        "seed-4": {"text": "Someone walked. She saw it."},  # nothing, written later
        "seed-5": {"text": "Someone walked. I saw it, I did."},  # first person only
    }
    assert [adherence_of(request, s["text"]) for s in stories.values()] == [
        1.0,
        0.0,
        1 / 3,
        0.0,
        1 / 3,
    ]
    assert extreme_pair(request, stories) == {k: stories[k] for k in ("seed-1", "seed-2")}
    assert list(extreme_pair(request, {k: stories[k] for k in ("seed-3", "seed-1")})) == [
        "seed-1",
        "seed-3",
    ]
    # A rule that counts the characters only: the first-person story no longer scores.
    names = ["character"]
    assert [adherence_of(request, s["text"], names) for s in stories.values()] == [
        1.0,
        0.0,
        0.5,
        0.0,
        0.0,
    ]
    some = {k: stories[k] for k in ("seed-3", "seed-4", "seed-5")}
    assert list(extreme_pair(request, some)) == ["seed-4", "seed-5"]  # a tie at best: the last
    assert list(extreme_pair(request, some, names)) == ["seed-3", "seed-4"]
    item = Item("x", request, {k: stories[k] for k in ("seed-3", "seed-5")})
    assert scripted_choice(item, "seed-3", "seed-5") == "tie"  # a name against first person
    assert scripted_choice(item, "seed-3", "seed-5", names) == "left"
    assert scripted_choice(item, "seed-5", "seed-3", names) == "right"
    assert scripted_choice(item, "seed-5", "seed-3", ["pov"]) == "left"
    pov_only = FeedbackConfig(requests="r.jsonl", test="t.jsonl", rule_fields=["pov"])
    assert pov_only.judges(request) and not pov_only.judges(StoryRequest(genre="horror"))
    assert pov_only.annotator == "scripted-adherence:pov"
    with pytest.raises(ValueError, match="samples must be a whole number of at least 2"):
        FeedbackConfig(requests="r.jsonl", test="t.jsonl", samples=1)
    with pytest.raises(ValueError, match="test_samples must be a whole number of at least 1"):
        FeedbackConfig(requests="r.jsonl", test="t.jsonl", test_samples=0)
    for bad in (["characters"], [], "pov", {"pov": 1}, [1]):
        with pytest.raises(ValueError, match="rule_fields must be a list of kinds among genre"):
            FeedbackConfig(requests="r.jsonl", test="t.jsonl", rule_fields=bad)
    # One rule, one annotator name, whatever the order and repeats it was written with.
    both = FeedbackConfig(
        requests="r.jsonl", test="t.jsonl", rule_fields=["pov", "character", "pov"]
    )
    assert both.rule_fields == ["pov", "character"]  # in FIELD_KINDS order
    assert both.annotator == "scripted-adherence:pov+character"


def test_an_interrupted_tuning_resumes_from_its_checkpoint_and_ends_as_an_unbroken_one(
    tiny_model_dir, sft, tmp_path, monkeypatch
):
    """Killed right after its step-2 checkpoint, a rerun of the same command goes on from
    there (it trains steps 3 and 4 only) and ends with the adapter an uninterrupted run gets,
    bit for bit (optimizer, scheduler, data order and dropout all restored)."""
    import transformers

    (tmp_path / "prefer").mkdir()
    rows = [
        {"prompt": PROMPT, "chosen": f"Mara ran to the sea {i}.", "rejected": f"qq zz xx {i} vv."}
        for i in range(16)
    ]
    (tmp_path / "prefer" / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tune(_cfg(tiny_model_dir, sft, tmp_path, output_dir=str(tmp_path / "whole")), progress=False)

    save = transformers.Trainer._save_checkpoint

    def save_then_die(self, *args, **kwargs):
        save(self, *args, **kwargs)
        if self.state.global_step == 2:
            raise KeyboardInterrupt  # the power goes out after the checkpoint is on disk

    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", save_then_die)
    cfg = _cfg(tiny_model_dir, sft, tmp_path, output_dir=str(tmp_path / "broken"))
    with pytest.raises(KeyboardInterrupt):
        tune(cfg, progress=False)
    assert (tmp_path / "broken" / "checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.setattr(transformers.Trainer, "_save_checkpoint", save)

    steps = []
    step = transformers.Trainer.training_step

    def counted(self, *args, **kwargs):
        steps.append(self.state.global_step + 1)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", counted)
    metrics = tune(cfg, progress=False)
    assert steps == [3, 4] and metrics["steps"] == 4
    whole = load_file(tmp_path / "whole" / "adapter_model.safetensors")
    resumed = load_file(tmp_path / "broken" / "adapter_model.safetensors")
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(resumed[name], whole[name]), name  # measured: bit for bit
    assert not (tmp_path / "broken" / "checkpoints").exists()  # cleaned up once finished
