"""Evaluation: metrics against their reference implementations, perplexity, the comparison run."""

import json
import math
from pathlib import Path

import pytest
import sacrebleu
import torch
import yaml
from rouge_score.rouge_scorer import RougeScorer

from eval.adherence import FIELD_KINDS, adherence, check
from eval.compare import EvalError, load_test_set, run
from eval.diversity import distinct_n, repeated_ngram_rate, self_bleu
from eval.overlap import bleu, lcs_length, rouge, rouge_pair
from eval.perplexity import NLL, perplexity, story_nll
from eval.registry import figures_for
from eval.scoring import default_window
from finetune.build import build, read_examples
from storygen.config import ModelSpec
from storygen.request import Character, Setting, StoryRequest

from .conftest import CORPUS, FIXTURES, copy_text

TEXTS = [
    "The dragon flew over the castle, and the wizard watched it go.",
    "Mara ran to the lighthouse; the sea was cold and dark that night.",
    "Running runners ran quickly past the running river at dawn.",
    "",
]


def test_rouge_matches_rouge_score_exactly():
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for hyp in TEXTS:
        for ref in TEXTS + [" ".join(CORPUS[:6])]:
            ours = rouge_pair(hyp, ref)
            theirs = scorer.score(ref, hyp)
            assert set(ours) == {"rouge1", "rouge2", "rougeL"}
            for k in ours:
                assert ours[k] == pytest.approx(theirs[k].fmeasure, abs=1e-12), (k, hyp, ref)


def test_corpus_rouge_is_the_mean_of_rouge_score_per_pair():
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    hyps = [*TEXTS[:3], "storm", "the", "a b"]  # one-word hypotheses too
    refs = [TEXTS[1], TEXTS[0], TEXTS[2], "a storm came", "the end", "a b"]
    scores = [scorer.score(r, h) for h, r in zip(hyps, refs)]
    for workers in (1, 2):
        ours = rouge(hyps, refs, workers=workers)
        assert set(ours) == {"rouge1", "rouge2", "rougeL"}
        for k in ours:
            expected = sum(s[k].fmeasure for s in scores) / len(hyps)
            assert ours[k] == pytest.approx(expected, abs=1e-12), (k, workers)
    assert rouge_pair("storm", "a storm came")["rouge1"] == pytest.approx(0.5)
    assert rouge([], []) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert rouge(["a storm came"], ["a storm came"]) == {
        "rouge1": 1.0,
        "rouge2": 1.0,
        "rougeL": 1.0,
    }
    with pytest.raises(ValueError, match="^3 hypotheses but 2 references$"):
        rouge(hyps[:3], refs[:2])


def test_bit_parallel_lcs_matches_dynamic_programming():
    import random

    rng = random.Random(0)
    for _ in range(200):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 30))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 70))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = (
                    table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
                )
        assert lcs_length(a, b) == table[-1][-1]


def test_bleu_is_corpus_bleu_not_mean_of_sentences():
    hyps, refs = TEXTS[:3], [TEXTS[1], TEXTS[1], TEXTS[2]]
    assert bleu(hyps, refs) == sacrebleu.corpus_bleu(hyps, [refs]).score
    mean_sentence = sum(sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(hyps, refs)) / 3
    assert bleu(hyps, refs) != pytest.approx(mean_sentence)
    with pytest.raises(ValueError):
        rouge(hyps, refs[:2])


def test_diversity_metrics_on_known_texts():
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b", "a b"], 2) == 0.5
    assert repeated_ngram_rate("a b c d a b c d", 4) == pytest.approx(1 / 5)
    assert repeated_ngram_rate("a b c", 4) == 0.0
    assert self_bleu(["the cat sat on the mat today"] * 3) == pytest.approx(100.0)
    assert self_bleu(TEXTS[:3]) < 20


def test_adherence_counts_the_measured_judges_and_leaves_the_others_out():
    """Each field the request sets is judged by its validated judge; a field whose judge is not
    measured (docs/judges: the ending, the era, the arc) is in no figure, and a story the
    judges cannot read follows nothing."""
    from eval.adherence import measured_kinds, not_measured
    from storygen.judges import judges

    req = StoryRequest(
        characters=[Character("Mara", ["stubborn"]), Character("Jonah")],
        setting=Setting("the old lighthouse", "1920s"),
        genre="fantasy",
        pov="first person",
        plot_points=["a dragon burns the castle"],
        tone="dark",
        ending="happy",
        length="flash",
        prompt="A keeper's last night",
        arc="icarus",
    )
    story = (
        "I watched Mara climb the old lighthouse, stubborn as ever, while the storm came in. "
        "The dragon came at night, and its fire burned the castle while the wizard cast a "
        "spell. Magic filled the kingdom, and I knew the old king would not see the dawn. "
        "Mara refused to leave the lamp, and I stayed beside her until the fire went out."
    )
    result = check(req, story)
    kinds = {key.split(":")[0] for key in result}
    assert kinds == set(measured_kinds()) & {
        "character", "trait", "place", "era", "genre", "pov", "event", "tone", "ending", "arc"
    }  # fmt: skip
    unmeasured = not_measured(req)
    assert unmeasured and not kinds & set(unmeasured)
    assert all(not judges().measured(k) for k in unmeasured)
    assert set(FIELD_KINDS) >= kinds | set(unmeasured)
    if judges().measured("character"):
        assert result["character:Mara"] and not result["character:Jonah"]
    if judges().measured("pov"):
        assert result["pov"]
    summary = adherence([req], [story])
    assert summary["adherence"] == pytest.approx(sum(result.values()) / len(result))
    assert adherence([req], [""])["adherence"] == 0.0  # nothing to read: nothing followed


def test_sliding_window_scores_every_token_once(tiny_lm):
    prompt, story = "Once upon a time", " ".join(CORPUS[:4])
    full = story_nll(tiny_lm.model, tiny_lm.tokenizer, prompt, story, window=512)
    slid = story_nll(tiny_lm.model, tiny_lm.tokenizer, prompt, story, window=64, stride=16)
    n_story = len(tiny_lm.tokenizer(story, add_special_tokens=False).input_ids)
    assert full.tokens == slid.tokens == n_story
    assert slid.nll > 0 and abs(slid.nll - full.nll) / full.nll < 0.1  # less context, close
    # With the whole text inside one window, scoring equals one plain forward pass.
    ids = tiny_lm.tokenizer(prompt + story, add_special_tokens=False).input_ids
    n_prompt = len(tiny_lm.tokenizer(prompt, add_special_tokens=False).input_ids)
    with torch.no_grad():
        logits = tiny_lm.model(input_ids=torch.tensor([ids])).logits[0, :-1]
    nll = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:]), reduction="none")
    assert full.nll == pytest.approx(float(nll[n_prompt - 1 :].sum()), rel=1e-4)


def test_sliding_window_keeps_the_context_that_non_overlapping_windows_lose(context_lm):
    """On a model that depends on its context, each scored token must see up to
    ``window - stride`` tokens before it: cutting the text into separate windows costs."""
    import random

    model, tok, words = context_lm
    rng = random.Random(7)
    full = slid = apart = blind = 0.0
    for _ in range(4):
        story = " " + copy_text(rng, words)
        assert len(tok(story, add_special_tokens=False).input_ids) > 24  # several windows
        full += story_nll(model, tok, "Once", story, window=512).nll
        slid += story_nll(model, tok, "Once", story, window=24, stride=4).nll
        apart += story_nll(model, tok, "Once", story, window=24, stride=24).nll
        blind += story_nll(model, tok, "Once", story, window=2, stride=1).nll
    # The model learnt to copy: with one token of context it does far worse.
    assert blind > 2 * full
    # A sliding window with 20 tokens of context loses nothing (the block repeats every 8);
    # separate windows of 24 lose the block at every window start.
    assert abs(slid - full) / full < 0.05 and apart > 1.25 * full


def test_perplexity_adds_up_each_story_with_the_window_it_was_given(context_lm):
    import random

    model, tok, words = context_lm
    rng = random.Random(3)
    pairs = [("Once", " " + copy_text(rng, words)) for _ in range(3)]
    parts = [story_nll(model, tok, p, s, window=24, stride=24) for p, s in pairs]
    out = perplexity(model, tok, pairs, window=24, stride=24, progress=False)
    assert out["tokens"] == sum(n.tokens for n in parts)
    assert out["words"] == sum(n.words for n in parts) == sum(len(s.split()) for _, s in pairs)
    assert out["nll_per_token"] == pytest.approx(sum(n.nll for n in parts) / out["tokens"])
    # The window and stride reach every story: a sliding window scores these differently.
    slid = perplexity(model, tok, pairs, window=24, stride=4, progress=False)
    assert slid["nll_per_token"] < 0.9 * out["nll_per_token"]


def test_nothing_scored_has_no_perplexity_and_the_window_is_capped():
    import types

    empty = NLL(0.0, 0, 0).summary()
    assert all(math.isnan(empty[k]) for k in ("token_ppl", "word_ppl", "nll_per_token"))
    for limit, window in ((512, 512), (4096, 2048), (None, 2048)):
        model = types.SimpleNamespace(config=types.SimpleNamespace(max_position_embeddings=limit))
        assert default_window(model) == window
    assert default_window(types.SimpleNamespace(config=types.SimpleNamespace())) == 2048


def test_word_and_token_perplexity_share_the_total_nll(tiny_lm):
    pairs = [("A story:", CORPUS[0]), ("Another:", CORPUS[1])]
    out = perplexity(tiny_lm.model, tiny_lm.tokenizer, pairs, progress=False)
    total_nll = out["nll_per_token"] * out["tokens"]
    assert out["words"] == len(CORPUS[0].split()) + len(CORPUS[1].split())
    assert out["word_ppl"] == pytest.approx(math.exp(total_nll / out["words"]))
    assert out["token_ppl"] == pytest.approx(math.exp(out["nll_per_token"]))


@pytest.fixture
def comparison(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    build(FIXTURES / "wp_hf.csv", data, valid_fraction=0.0, progress=False)
    config = {
        "test": str(data / "train.jsonl"),
        "limit": 3,
        "seed": 5,
        "metrics": ["perplexity", "overlap", "diversity", "adherence", "speed"],
        "systems": [
            {
                "name": "greedy",
                "base": str(tiny_model_dir),
                "quantization": "fp32",
                "sampling": {"temperature": 0, "max_new_tokens": 12},
            },
            {
                "name": "sampled",
                "base": str(tiny_model_dir),
                "quantization": "fp32",
                "sampling": {"temperature": 1.0, "max_new_tokens": 12},
            },
        ],
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_comparison_writes_reports_and_resumes(comparison, tmp_path, monkeypatch):
    out = tmp_path / "out"
    results = run(comparison, out)
    assert [r["system"] for r in results] == ["greedy", "sampled"]
    for r in results:
        assert math.isfinite(r["token_ppl"]) and r["token_ppl"] > 1 and r["word_ppl"] > 1
        assert 0 <= r["bleu"] <= 100 and 0 <= r["rougeL"] <= r["rouge1"] <= 1
        assert 0 <= r["distinct_2"] <= 1 and 0 <= r["adherence"] <= 1
    table = (out / "results.md").read_text()
    for r in results:  # each system's row, with its own figures
        ci, wci = r["ci95"]["token_ppl"], r["ci95"]["word_ppl"]
        assert ci[0] <= r["token_ppl"] <= ci[1] and wci[0] <= r["word_ppl"] <= wci[1]
        assert (
            f"| {r['system']} | {r['token_ppl']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] | "
            f"{r['word_ppl']:.3f} [{wci[0]:.3f}, {wci[1]:.3f}] |" in table
        )
        # Every figure has its interval, and how many items it covers; memory is one
        # measurement of the engine, not a figure over items.
        numbers = [k for k, v in r.items() if isinstance(v, float) and k != "memory_mib"]
        assert set(numbers) <= set(r["ci95"]) and r["n_per_figure"]["bleu"] == 3
        saved = json.loads((out / "generations" / f"{r['system']}.memory.json").read_text())
        assert r["memory_mib"] == saved["memory_mib"]  # the writing run's figure, kept
    png = out / "metrics.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert min(Image.open(png).size) > 200  # a real figure, not an empty file
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    lines = (out / "generations" / "greedy.jsonl").read_text().splitlines()
    assert len(lines) == 3
    timing = [json.loads(line)["provenance"] for line in lines]  # speed: pooled over stories
    pooled = sum(p["new_tokens"] for p in timing) / sum(p["seconds"] for p in timing)
    assert results[0]["tokens_per_s"] == pytest.approx(pooled)
    assert results[0]["first_token_s"] == pytest.approx(sum(p["first_token_s"] for p in timing) / 3)

    import storygen.generation as g

    def fail(*a, **kw):
        raise AssertionError("a finished story was generated again")

    monkeypatch.setattr(g, "generate_story", fail)
    again = run(comparison, out)
    assert again[0]["bleu"] == results[0]["bleu"]
    # the engine's memory is the figure of the run that wrote the stories, not of a reload
    assert [r["memory_mib"] for r in again] == [r["memory_mib"] for r in results]
    # Readers' batches read these stories as they are saved, with the requests they answer.
    from eval.readers import make_batches

    made = make_batches(out, ["greedy", "sampled"], tmp_path / "readers")
    assert made["items"] == 3 and 3 <= made["stories"] <= 6
    shown = (tmp_path / "readers" / "batch_01.md").read_text()
    first = json.loads(lines[0])["story"].strip()
    assert first and first[:40] in shown
    # A story saved under other settings, after the one the report scored, is not the one read.
    stale = {**json.loads(lines[0]), "key": "other-settings", "story": "A stale story."}
    with (out / "generations" / "greedy.jsonl").open("a") as f:
        f.write(json.dumps(stale) + "\n")
    make_batches(out, ["greedy", "sampled"], tmp_path / "readers2")
    assert "A stale story." not in (tmp_path / "readers2" / "batch_01.md").read_text()
    # A/B items for a study: the scored stories, side by side, each with its provenance.
    from eval.readers import make_pairs
    from human_ratings.pairs import load_items

    n = make_pairs(out, ["greedy", "sampled"], tmp_path / "items.jsonl")
    items = load_items(tmp_path / "items.jsonl")
    assert len(items) == n and 1 <= n <= 3
    texts = {json.loads(x)["id"]: json.loads(x)["story"] for x in lines}
    assert {it.stories["greedy"]["text"] for it in items} <= set(texts.values())
    assert "A stale story." not in {it.stories["greedy"]["text"] for it in items}
    assert all(it.stories["sampled"]["provenance"]["sampling"] for it in items)
    with pytest.raises(EvalError, match="exactly two"):
        make_pairs(out, ["greedy"], tmp_path / "x.jsonl")


def test_bad_comparison_inputs_are_clear_errors(tmp_path, comparison):
    bad = tmp_path / "bad.yaml"
    bad.write_text("systems: []\n")
    with pytest.raises(EvalError, match="needs 'test'"):
        run(bad, tmp_path / "o")
    with pytest.raises(EvalError, match="does not exist"):
        load_test_set(tmp_path / "missing.jsonl", 3)
    junk = tmp_path / "junk.jsonl"
    junk.write_text('{"id": 1}\n')
    with pytest.raises(EvalError, match="junk.jsonl:1: not a test item .*finetune preprocess"):
        load_test_set(junk, 3)
    # The raw stories, not yet preprocessed: what to run to make a test set of them.
    with pytest.raises(EvalError) as raw:
        load_test_set(FIXTURES / "wp_hf.csv", 3)
    assert f"preprocess {FIXTURES / 'wp_hf.csv'} --test-fraction" in str(raw.value)
    assert "DIR/test.jsonl" in str(raw.value)
    bad.write_text(
        yaml.safe_dump({"test": "t.jsonl", "exclude": "train.jsonl", "systems": [{"name": "a"}]})
    )
    with pytest.raises(EvalError, match="exclude must be a list of JSONL paths"):
        run(bad, tmp_path / "o")
    with pytest.raises(EvalError, match="cannot read the story ids of .*nope.jsonl"):
        load_test_set(junk, 3, [tmp_path / "nope.jsonl"])


def test_stories_another_adapter_trained_on_are_left_out_of_the_test_set(tmp_path):
    data = tmp_path / "data"
    build(FIXTURES / "wp_hf.csv", data, valid_fraction=0.0, progress=False)
    test = data / "train.jsonl"
    every = load_test_set(test, 100)
    seen = tmp_path / "other_train.jsonl"
    seen.write_text("".join(json.dumps({"id": i["id"]}) + "\n" for i in every[1:3]))
    kept = load_test_set(test, 100, [seen])
    assert [i["id"] for i in kept] == [every[0]["id"]] + [i["id"] for i in every[3:]]
    assert [i["id"] for i in load_test_set(test, 2, [seen])] == [every[0]["id"], every[3]["id"]]


def test_parallel_scoring_equals_one_process():
    from eval.diversity import diversity

    hyps = [t for t in (CORPUS[:6] + TEXTS[:3]) * 3]
    refs = list(reversed(hyps))
    assert bleu(hyps, refs, workers=2) == pytest.approx(bleu(hyps, refs), abs=1e-9)
    assert rouge(hyps, refs, workers=2) == pytest.approx(rouge(hyps, refs), abs=1e-12)
    d = diversity(hyps)
    assert d["distinct_1"] == distinct_n(hyps, 1) and d["distinct_2"] == distinct_n(hyps, 2)
    assert d["repeated_4gram_rate"] == pytest.approx(
        sum(map(repeated_ngram_rate, hyps)) / len(hyps)
    )


def test_self_bleu_equals_the_sentence_bleu_definition():
    texts = CORPUS[:6] + TEXTS[:3] + ["the cat sat on the mat today", "the cat sat on the mat"]
    expected = sum(
        sacrebleu.sentence_bleu(t, texts[:i] + texts[i + 1 :]).score for i, t in enumerate(texts)
    ) / len(texts)
    assert self_bleu(texts) == pytest.approx(expected, abs=1e-9)


@pytest.mark.integration  # the real embedded model
def test_a_comparison_generates_on_llamacpp_and_scores_on_the_same_weights(tmp_path):
    """A system on the embedded base writes through llama.cpp (the CPU default) and is scored by
    its transformers twin (fp32 from the same GGUF); an unknown key is named."""
    data = tmp_path / "data"
    build(FIXTURES / "wp_hf.csv", data, valid_fraction=0.0, progress=False)
    config = {
        "test": str(data / "train.jsonl"),
        "limit": 2,
        "metrics": ["perplexity", "overlap"],
        "systems": [{"name": "demo", "adapter": "demo", "sampling": {"max_new_tokens": 12}}],
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    (result,) = run(path, tmp_path / "out")
    rows = (tmp_path / "out" / "generations" / "demo.jsonl").read_text().splitlines()
    provenance = json.loads(rows[0])["provenance"]
    assert provenance["backend"] == "llamacpp" and provenance["adapter_name"]
    # Scored by the real model's fp32 twin with the demo adapter, after the adapter's own
    # tagged prompt: the same figure as scoring those two stories directly.
    from eval.perplexity import perplexity
    from storygen.loading import load_model
    from storygen.prompt_format import render_request

    lm = load_model(ModelSpec(adapter="demo", backend="transformers", quantization="fp32"))
    items = load_test_set(data / "train.jsonl", 2)
    pairs = [(render_request(it["request"]), it["reference"]) for it in items]
    want = perplexity(lm.model, lm.tokenizer, pairs, progress=False)
    assert result["token_ppl"] == pytest.approx(want["token_ppl"], rel=1e-6)
    assert result["word_ppl"] == pytest.approx(want["word_ppl"], rel=1e-6)
    config["systems"][0]["max_tokens"] = 5
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(EvalError, match="unknown setting 'max_tokens'.*known: base, adapter"):
        run(path, tmp_path / "out2")


def test_a_token_cap_scores_the_storys_first_tokens_only(tiny_lm):
    prompt, story = "Once upon a time", " ".join(CORPUS[:4])
    tok = tiny_lm.tokenizer
    ids = tok(story, add_special_tokens=False).input_ids
    full = story_nll(tiny_lm.model, tok, prompt, story, window=512)
    capped = story_nll(tiny_lm.model, tok, prompt, story, window=512, max_tokens=10)
    assert capped.tokens == 10 and capped.words == len(tok.decode(ids[:10]).split())
    # The capped story's NLL is the first 10 terms of the full story's sum.
    with torch.no_grad():
        p = tok(prompt, add_special_tokens=False).input_ids
        logits = tiny_lm.model(input_ids=torch.tensor([p + ids])).logits[0, :-1]
    terms = torch.nn.functional.cross_entropy(logits, torch.tensor((p + ids)[1:]), reduction="none")
    first = terms[len(p) - 1 : len(p) - 1 + 10]
    assert capped.nll == pytest.approx(float(first.sum()), rel=1e-4)
    assert story_nll(tiny_lm.model, tok, prompt, story, 512, None, len(ids) + 5) == full


def test_a_comparison_resumes_each_stage_and_redoes_only_what_a_changed_setting_affects(
    comparison, tmp_path, monkeypatch
):
    import eval.perplexity as perplexity_module
    import storygen.generation as g

    out = tmp_path / "out"
    first = run(comparison, out)
    scores = (out / "scores" / "greedy.perplexity.jsonl").read_text().splitlines()
    assert len(scores) == 3 and all(json.loads(line)["key"] for line in scores)
    calls = {"nll": 0, "story": 0}
    real_nll, real_story = perplexity_module.story_nll, g.generate_story

    def counting_nll(*a, **kw):
        calls["nll"] += 1
        return real_nll(*a, **kw)

    def counting_story(*a, **kw):
        calls["story"] += 1
        return real_story(*a, **kw)

    monkeypatch.setattr(perplexity_module, "story_nll", counting_nll)
    monkeypatch.setattr(g, "generate_story", counting_story)
    # An interrupted run: the last perplexity line torn as a kill leaves it (no line break at
    # its end), one story's line lost.
    path = out / "scores" / "sampled.perplexity.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:2] + [lines[2][:20]]))
    gens = out / "generations" / "greedy.jsonl"
    gens.write_text("\n".join(gens.read_text().splitlines()[:2]) + "\n")
    again = run(comparison, out)
    assert calls == {"nll": 1, "story": 1}
    for a, b in zip(first, again, strict=True):
        assert a["token_ppl"] == pytest.approx(b["token_ppl"], rel=1e-9) and a["bleu"] == b["bleu"]
    assert all(json.loads(line)["score"] for line in path.read_text().splitlines())
    calls.update(nll=0, story=0)
    run(comparison, out)  # and nothing is redone once it is whole again
    assert calls == {"nll": 0, "story": 0}
    # The same ids with other text (a new preprocess): those items are made again.
    test = Path(yaml.safe_load(comparison.read_text())["test"])
    items = read_examples(test)
    items[0]["completion"] += " One more line."
    test.write_text("".join(json.dumps(r) + "\n" for r in items))
    run(comparison, out)
    assert calls == {"nll": 2, "story": 0}  # the reference changed; the request did not
    items[1]["request"]["genre"] = "horror"
    test.write_text("".join(json.dumps(r) + "\n" for r in items))
    calls.update(nll=0, story=0)
    run(comparison, out)
    assert calls == {"nll": 2, "story": 2}
    # A changed window rescoring every story, a changed sampling regenerating that system's.
    calls.update(nll=0, story=0)
    config = yaml.safe_load(comparison.read_text())
    config["window"], config["stride"] = 32, 8
    config["systems"][1]["sampling"]["temperature"] = 0.7
    comparison.write_text(yaml.safe_dump(config))
    calls.update(nll=0, story=0)
    run(comparison, out)
    assert calls == {"nll": 6, "story": 3}


def test_results_are_written_system_by_system_and_a_failed_system_leaves_no_empty_folder(
    comparison, tmp_path
):
    config = yaml.safe_load(comparison.read_text())
    config["metrics"] = ["perplexity", "overlap"]
    config["systems"][1]["plan"] = "reference"  # the test items have no plans: refused
    data = read_examples(Path(config["test"]))
    plain = tmp_path / "no_plans.jsonl"
    plain.write_text("".join(json.dumps({**row, "plan": None}) + "\n" for row in data))
    config["test"] = str(plain)
    comparison.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    with pytest.raises(EvalError, match="reference plan"):
        run(comparison, out)
    written = json.loads((out / "results.json").read_text())
    assert [r["system"] for r in written] == ["greedy"] and written[0]["n_items"] == 3
    assert sorted(p.name for p in (out / "generations").iterdir()) == [
        "greedy.jsonl",
        "greedy.memory.json",  # the engine's memory figure, kept beside its stories
    ]


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"window": 0}, "window must be at least 1"),
        ({"stride": "half"}, "stride must be a whole number"),
        ({"window": 16, "stride": 32}, "stride \\(32\\) exceeds window"),
        ({"max_story_tokens": -5}, "max_story_tokens must be at least 1"),
    ],
)
def test_bad_perplexity_settings_are_named(comparison, settings, message):
    from eval.compare import Comparison

    comparison.write_text(yaml.safe_dump({**yaml.safe_load(comparison.read_text()), **settings}))
    with pytest.raises(EvalError, match=message):
        Comparison.load(comparison)


def test_a_new_metric_is_one_registration_and_the_comparison_reports_it(
    comparison, tmp_path, monkeypatch
):
    """Registering a metric is all it takes: the comparison scores it, gives it an interval,
    saves its per-item values and pairs it between systems."""
    from eval import compare, registry
    from eval.metric import Figure, Metric, mean_of

    exclaims = Metric(
        "exclaims",
        "stories",
        lambda item: {"exclaims": float("!" in item.story)},
        lambda rows: [Figure("exclaim_rate", mean_of("exclaims"), "exclaims")],
    )
    monkeypatch.setitem(registry.METRICS, "exclaims", exclaims)
    config = yaml.safe_load(comparison.read_text())
    config["metrics"] = ["exclaims"]
    comparison.write_text(yaml.safe_dump(config))
    results = compare.run(comparison, tmp_path / "out")
    assert all(0 <= r["exclaim_rate"] <= 1 and len(r["ci95"]["exclaim_rate"]) == 2 for r in results)
    saved = (tmp_path / "out" / "per_item" / "greedy.jsonl").read_text()
    assert saved.count('"exclaims"') == 3
    diffs = json.loads((tmp_path / "out" / "differences.json").read_text())
    assert [d["metric"] for d in diffs] == ["exclaim_rate"]


def _rows(metric, pairs, requests=None):
    from eval.metric import Item
    from storygen.request import StoryRequest

    requests = requests or [StoryRequest(prompt="x")] * len(pairs)
    return [
        {"id": str(i), **metric.score(Item(str(i), q, ref, story=hyp))}
        for i, ((hyp, ref), q) in enumerate(zip(pairs, requests, strict=True))
    ]


PAIRS = [
    ("The dragon flew over the castle at dawn.", "A dragon flew over a castle."),
    ("Mara ran to the lighthouse in the storm.", "Mara kept the lighthouse lit."),
    ("The ship sank and the sea was quiet.", "The sea was cold and the ship was lost."),
    ("He laughed and the dog barked twice.", "The dog barked at the moon."),
]


def test_the_registered_figures_are_the_corpus_metrics_they_stand_for():
    """Corpus BLEU from summed per-item counts is sacrebleu's corpus BLEU; the pooled and set
    figures equal the functions the `eval score` command uses."""
    from eval.adherence import adherence
    from eval.diversity import diversity
    from eval.overlap import bleu, rouge
    from eval.registry import METRICS
    from storygen.request import Character, StoryRequest

    hyps, refs = [h for h, _ in PAIRS], [r for _, r in PAIRS]
    overlap = {
        f.name: f.of(_rows(METRICS["overlap"], PAIRS))
        for f in figures_for(_rows(METRICS["overlap"], PAIRS), ["overlap"])
    }
    assert overlap == pytest.approx({"bleu": bleu(hyps, refs), **rouge(hyps, refs)}, abs=1e-12)
    from eval.overlap import corpus_bleu

    assert math.isnan(corpus_bleu([])) and math.isnan(corpus_bleu([{"id": "no story"}]))
    rows = _rows(METRICS["diversity"], PAIRS)
    got = {f.name: f.of(rows) for f in figures_for(rows, ["diversity"])}
    assert got.pop("mean_words") == pytest.approx(sum(len(h.split()) for h in hyps) / 4)
    assert got == pytest.approx(diversity(hyps), abs=1e-12)
    asks = [StoryRequest(characters=[Character("Mara")], tone="dark", prompt="x")] * 4
    rows = _rows(METRICS["adherence"], PAIRS, asks)
    got = {f.name: f.of(rows) for f in figures_for(rows, ["adherence"])}
    assert got == pytest.approx(adherence(asks, hyps), abs=1e-12)


def test_the_perplexity_metric_scores_the_reference_after_the_systems_prompt(tiny_lm):
    from types import SimpleNamespace

    from eval.metric import Item
    from eval.registry import METRICS

    prompts = ["Once upon a time", "In a far land"]
    story = " ".join(CORPUS[:2])
    item = Item(
        "b",
        StoryRequest(prompt="x"),
        story,
        index=1,
        scorer=SimpleNamespace(lm=tiny_lm),
        prompts=prompts,
        options={"window": 32, "stride": 8, "max_story_tokens": 40},
    )
    got = METRICS["perplexity"].score(item)
    want = story_nll(tiny_lm.model, tiny_lm.tokenizer, prompts[1], story, 32, 8, 40)
    assert got == {"nll": want.nll, "tokens": 40, "words": want.words}
    whole = story_nll(tiny_lm.model, tiny_lm.tokenizer, prompts[1], story, None, None, 40)
    assert whole.nll != want.nll  # the window is the one asked for, not the model's own
    rows = [{"id": "a", "nll": 10.0, "tokens": 5, "words": 4}, {"id": "b", **got}]
    registered = figures_for(rows, ["perplexity"])  # each figure finds the items it needs
    assert [f.name for f in registered] == ["token_ppl", "word_ppl", "nll_per_token"]
    figures = {f.name: f.of(rows) for f in registered}
    assert figures == pytest.approx(
        {
            "token_ppl": math.exp((10 + got["nll"]) / 45),
            "word_ppl": math.exp((10 + got["nll"]) / (4 + got["words"])),
            "nll_per_token": (10 + got["nll"]) / 45,
        }
    )


def test_speed_pools_tokens_over_writing_time_and_skips_untimed_stories():
    """10 tokens in 1 s and 10 in 4 s: 4 tokens/s over the 5 s written (a mean of the two
    rates would say 6.25); a story saved without timing counts for nothing."""
    from eval.metric import Item
    from eval.speed import METRIC

    def item(provenance):
        return Item(id="x", request=StoryRequest(), reference="r", provenance=provenance)

    rows = [
        METRIC.score(item({"new_tokens": 10, "seconds": 1.0, "first_token_s": 0.2})),
        METRIC.score(item({"new_tokens": 10, "seconds": 4.0, "first_token_s": 0.4})),
        METRIC.score(item(None)),
        METRIC.score(item({"new_tokens": 7, "seconds": 0.0})),
    ]
    assert rows[2:] == [{}, {}]
    figures = {f.name: f.of(rows) for f in METRIC.figures(rows)}
    assert figures == {
        "tokens_per_s": 4.0,
        "first_token_s": pytest.approx(0.3),
        "seconds_per_story": 2.5,
    }
    # Best of n: the reader waits for every attempt, not only the one kept.
    best = {"new_tokens": 10, "seconds": 1.0, "attempts": {"n": 4, "seconds": 9.0}}
    row = METRIC.score(item(best))
    assert row["story_seconds"] == 9.0 and row["writing_seconds"] == 1.0


def test_length_is_met_within_its_band_and_an_ending_is_the_models_own():
    from eval.length import length_scores

    short = " ".join(["word"] * 349) + " end."  # short asks about 350 words
    met = length_scores(short, "short", "eos")
    assert met["length_met"] == 1 and met["ended"] == 1
    cut = length_scores(" ".join(["word"] * 100) + ".", "short", "length")
    assert cut["length_met"] == 0 and cut["ended"] == 0
    assert cut["length_ratio"] == pytest.approx(100 / 350)
    assert length_scores(" ".join(["w"] * 233) + ".", "short", "eos")["length_met"] == 0  # < 2/3
    assert length_scores(" ".join(["w"] * 525), "short", "eos")["length_met"] == 1  # 3/2
    long = length_scores(" ".join(["word"] * 600) + ".", "short", None)
    assert long["length_met"] == 0 and "ended" not in long  # no provenance: not guessed
    assert length_scores("He ran.", "flash", "repetition")["ended"] == 0


def test_a_report_says_which_data_trained_each_system(tmp_path):
    from eval.compare.report import trained_on, trained_on_table
    from storygen.config import SystemSpec

    folder = tmp_path / "mixed"
    folder.mkdir()
    sources = [
        {"writer": "reddit", "model_written": False, "train": 397},
        {"writer": "gpt-4", "model_written": True, "train": 394},
    ]
    mix = {"sources": sources, "model_written_share": {"train words": 0.41}}
    (folder / "data_report.json").write_text(json.dumps({"train": 791, "mix": mix}))

    def said(adapter):
        return trained_on(SystemSpec.from_dict({"name": "x", "adapter": adapter}, "t").spec())

    assert said(str(folder)) == (
        "mixed: 397 by reddit, 394 by gpt-4 (model-written); 41% of its words model-written"
    )
    assert said("none") == "no adapter: the base model"
    (folder / "data_report.json").write_text(json.dumps({"train": 12}))
    assert said(str(folder)) == "mixed: 12 stories of one source (no mix)"
    table = trained_on_table([{"system": "x", "trained_on": said(str(folder))}])
    assert "| x | mixed: 12 stories" in table
