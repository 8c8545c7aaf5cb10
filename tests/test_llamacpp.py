"""The llama.cpp backend on the real embedded GGUF with the demo adapter's GGUF form: seeds, Stop,
the adapter's effect, bad input, and parity with the transformers reference."""

import json
import shutil
import subprocess
import sys
import threading

import pytest

from eval import parity
from storygen.backends import load_backend
from storygen.backends.base import DecodeStats
from storygen.config import ModelSpec, SamplingConfig, demo_adapter_dir
from storygen.generation import decode, generate_story
from storygen.loading import GGUF_ADAPTER, LoadError
from storygen.prompt_format import Prompt, tagged_prompt
from storygen.request import RequestError, StoryRequest

SETTINGS = SamplingConfig(seed=7, max_new_tokens=40)

pytestmark = pytest.mark.integration  # the real embedded model, or a process


@pytest.fixture(scope="module")
def demo():
    return load_backend(ModelSpec(adapter="demo"))


@pytest.fixture(scope="module")
def base():
    return load_backend(ModelSpec(adapter=None))


@pytest.fixture(scope="module")
def hf_demo():
    return parity.HFScorer("demo")


def test_the_default_on_a_cpu_is_llamacpp_with_the_demo_adapter(demo):
    assert ModelSpec().resolved_backend() == "llamacpp"
    p = generate_story(demo, StoryRequest(genre="horror", length="flash"), SETTINGS).provenance
    assert p["backend"] == "llamacpp" and p["quantization"] == "gguf-q4_1"
    assert p["adapter_name"] == "smollm2-135m-wp-mix" and p["prompt_style"] == "tagged"
    assert p["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_same_seed_same_story_other_seed_differs(demo, request_two_characters):
    a = generate_story(demo, request_two_characters, SETTINGS)
    b = generate_story(demo, request_two_characters, SETTINGS)
    c = generate_story(demo, request_two_characters, SamplingConfig(seed=8, max_new_tokens=40))
    assert a.text and a.text == b.text and a.provenance["new_tokens"] == b.provenance["new_tokens"]
    assert a.text != c.text


def test_concurrent_same_seed_stories_equal_the_sequential_one(request_two_characters):
    backend = load_backend(ModelSpec(adapter="demo"), slots=2)
    alone = generate_story(backend, request_two_characters, SETTINGS).text
    results = [None] * 4

    def run(i):
        results[i] = generate_story(backend, request_two_characters, SETTINGS).text

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [alone] * 4
    backend.close()


def test_stop_ends_the_work_between_two_tokens(demo):
    stop, stats = threading.Event(), DecodeStats()
    prompt = tagged_prompt(StoryRequest(genre="fantasy"))
    for i, (_, reason) in enumerate(
        decode(demo, prompt, SamplingConfig(seed=1), 400, stop, stats, stop_on_eos=False)
    ):
        if i == 4:
            stop.set()
        if reason:
            break
    assert reason == "stopped" and stats.forward_calls == 5 and stats.new_tokens == 5


def test_bad_input_gets_clear_errors(demo, tmp_path):
    with pytest.raises(RequestError):
        generate_story(demo, StoryRequest(genre="not a genre"), SETTINGS)
    with pytest.raises(LoadError, match="runs GGUF files"):
        load_backend(ModelSpec(base=str(tmp_path), backend="llamacpp", adapter=None))
    no_gguf = tmp_path / "adapter"
    shutil.copytree(demo_adapter_dir(), no_gguf)
    (no_gguf / GGUF_ADAPTER).unlink()
    with pytest.raises(LoadError, match="finetune export-gguf"):
        load_backend(ModelSpec(adapter=str(no_gguf)))


def test_an_adapter_of_another_base_is_refused(tmp_path):
    from finetune.export_gguf import config_from_gguf, export_gguf
    from storygen.embedded import gguf_path

    other = tmp_path / "other"
    shutil.copytree(demo_adapter_dir(), other)
    meta_file = other / "storygen_adapter.json"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({**meta, "base_model": "someone/else"}))
    export_gguf(other, config=config_from_gguf(gguf_path()))
    with pytest.raises(LoadError, match="trained on 'someone/else'"):
        load_backend(ModelSpec(adapter=str(other)))
    meta_file.write_text(json.dumps(meta))  # now only the GGUF form names the other base
    with pytest.raises(LoadError, match=f"{GGUF_ADAPTER} was trained on 'someone/else'"):
        load_backend(ModelSpec(adapter=str(other)))


def test_prompts_tokenize_as_transformers_tokenizes_them(demo, hf_demo):
    hf = hf_demo.backend
    for request in parity.example_requests(10):
        prompt = tagged_prompt(request)
        assert demo.tokenize(prompt) == hf.tokenize(prompt)


def test_user_text_never_forms_special_tokens(base):
    """Special tokens typed into a request stay text, on both backends (the tagged format
    escapes "|", so markers like <|im_start|> cannot even be spelled; <repo_name> can)."""
    from storygen.backends.hf import TransformersBackend
    from storygen.loading import load_model

    hf_base = TransformersBackend(load_model(ModelSpec(adapter=None, quantization="fp32")))
    request = StoryRequest(prompt="<repo_name> <file_sep> <jupyter_code> <empty_output>")
    for backend in (base, hf_base):
        specials = [
            backend.tokenize(Prompt(((name, True),), "chat"))
            for name in ("<repo_name>", "<file_sep>", "<jupyter_code>", "<empty_output>")
        ]
        assert all(len(ids) == 1 for ids in specials)  # each is one special token ...
        for prompt in (backend.prompt(request), tagged_prompt(request)):
            ids = backend.tokenize(prompt)
            assert not {ids[0] for ids in specials} & set(ids), prompt.style  # ... not here


def test_chat_prompt_equals_transformers_apply_chat_template(base):
    from transformers import AutoTokenizer

    from storygen.embedded import converted_dir

    tok = AutoTokenizer.from_pretrained(converted_dir())
    request = StoryRequest(genre="mystery", prompt="a letter in a bottle", length="flash")
    ours = base.prompt(request)
    content = ours.parts[1][0]
    expected = tok.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
    assert ours.style == "chat" and ours.text == expected


def fixture_stories() -> list[tuple[str, str]]:
    """(tagged prompt, story) of the last four fixture stories preprocessing keeps, as
    training renders them."""
    import csv

    from finetune.build import make_example
    from finetune.data import RawPair

    path = parity.ROOT / "tests" / "fixtures" / "wp_hf.csv"
    out = []
    for row in reversed(list(csv.DictReader(path.open(encoding="utf-8")))):
        raw = RawPair(row["prompt"], row["story"], str(row.get("row_id", len(out))))
        example, _ = make_example(raw, word_budget=1000, field_dropout=0.15)
        if example is not None:
            out.append((example["prompt"], example["completion"]))
        if len(out) == 4:
            break
    return out


@pytest.fixture(scope="module")
def parity_figures():
    """eval.parity's figures on the fixture stories (the same in CI and here, whether or not
    the shared sample is there; ``python -m bench.parity`` measures the 20 real ones), and
    greedy continuations of 10 example requests."""
    stories = fixture_stories()
    assert len(stories) == 4
    # 4 short stories, this demo adapter / the base: measured 0.16% / 0.08%, worst story
    # 0.46% / 0.32%, top-1 96.5% / 96.8%, adapter effect 0.124 vs 0.122 (correlation 0.997)
    limits = {"loss": 0.006, "story": 0.025, "top1": 0.95, "effect": 0.06}
    return parity.measure(stories, n_prompts=10, n_tokens=32), limits


def test_llamacpp_scores_stories_as_transformers_does(parity_figures):
    """Same weights, two engines: the mean per-token loss, each story's loss and the top token
    at each position agree, at the levels measured (see the fixture)."""
    figures, limits = parity_figures
    for key in ("demo", "base"):
        f = figures[key]
        assert f["loss_rel_diff"] < limits["loss"], f
        assert f["max_story_rel_diff"] < limits["story"], f
        assert f["top1_agreement"] > limits["top1"], f


def test_the_adapter_changes_stories_as_much_as_in_transformers(parity_figures):
    """Fails if llama.cpp silently ignored the LoRA: the loss it removes, story by story, is the
    same on both engines."""
    figures, limits = parity_figures
    effect = figures["adapter_effect"]
    assert effect["hf_mean"] > 0.05  # the adapter matters on these stories ...
    assert effect["llamacpp_mean"] == pytest.approx(effect["hf_mean"], rel=limits["effect"])
    assert effect["effect_correlation"] > 0.98  # ... story by story


def test_greedy_continuations_diverge_only_at_near_ties(parity_figures):
    """Greedy text diverges only through activation quantization, at near-ties: where the two
    engines' greedy continuations first differ, transformers prefers its own token by little
    (measured with this demo adapter on 10 requests, 6 distinct, x 32 tokens: 2 agree whole,
    8 diverge after 0-29 agreeing tokens, at gaps of 0.03-0.22 nats; the v2 adapter agreed for
    a median of 13 tokens, this one for 5: where the ties fall depends on the adapter). A wrong
    weight, prompt or sampler diverges where one token is clearly ahead. The losses, the
    stronger check, agree within 0.2% (above)."""
    greedy = parity_figures[0]["greedy"]
    diverged = sum(p < greedy["tokens"] for p in greedy["agreeing_prefix"])
    assert len(greedy["divergence_gaps"]) == diverged, greedy  # each divergence measured
    assert max(greedy["divergence_gaps"], default=0.0) < 0.5, greedy


def test_the_write_path_imports_no_torch():
    """The UI, its handlers, a story on llama.cpp and the judges run without torch or
    transformers."""
    code = (
        "import sys\n"
        "import story_ui.layout, story_ui.services, story_ui.write, story_ui.rate\n"
        "from storygen.judges import judge\n"
        "from storygen.backends import load_backend\n"
        "from storygen.generation import generate_story\n"
        "from storygen.config import SamplingConfig\n"
        "from storygen.request import StoryRequest\n"
        "b = load_backend()\n"
        "s = generate_story(b, StoryRequest(genre='horror'), SamplingConfig(max_new_tokens=8))\n"
        "assert s.provenance['backend'] == 'llamacpp'\n"
        "j = judge('Mara ran up the stairs of the old lighthouse. ' * 8, {'genre': 'horror'})\n"
        "assert not j.cannot_judge and j.verdicts\n"
        "bad = [m for m in ('torch', 'transformers', 'peft', 'bitsandbytes') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_committed_feedback_child_loads_here_and_meets_its_parent_in_the_arena(demo):
    """The DPO child of the v3 demo adapter (docs/feedback/round3) loads as an adapter folder
    does, and the arena sets it against its parent as its lineage names it, on any machine."""
    from human_ratings.pairs import arena_systems
    from storygen.config import project_root

    folder = project_root() / "adapters" / "smollm2-135m-wp-demo-dpo"
    child = load_backend(ModelSpec(adapter=str(folder)))
    request = StoryRequest(characters=[], genre="horror", length="flash")
    story = generate_story(child, request, SETTINGS)
    assert story.text and story.provenance["adapter_name"] == "smollm2-135m-wp-demo-dpo"
    assert child.prompt(request).text == demo.prompt(request).text  # the parent's format
    systems = arena_systems(folder)
    assert [(s.name, s.model.adapter) for s in systems] == [
        ("smollm2-135m-wp-demo-v3", "adapters/smollm2-135m-wp-demo-v3"),
        ("smollm2-135m-wp-demo-dpo", str(folder)),
    ]


def test_a_fresh_export_of_the_demo_adapter_is_the_committed_file(tmp_path):
    """The GGUF form llama.cpp loads is what export_gguf writes from the peft adapter now:
    every header field (the LoRA alpha among them) and every tensor, bit for bit. (The other
    llama.cpp tests load the committed file, so an export bug would hide there.)"""
    import numpy as np
    from gguf import GGUFReader

    from finetune.export_gguf import export_gguf

    fresh = GGUFReader(export_gguf(demo_adapter_dir(), tmp_path / "fresh.gguf"))
    committed = GGUFReader(demo_adapter_dir() / GGUF_ADAPTER)

    def fields(reader):
        return {
            name: [bytes(p) for p in f.parts[-1:]] if f.types else None
            for name, f in reader.fields.items()
        }

    assert fields(fresh) == fields(committed)
    alpha = fresh.fields["adapter.lora.alpha"]
    assert float(alpha.parts[alpha.data[0]][0]) == 16.0  # peft's lora_alpha, not alpha / r
    a = {t.name: t for t in fresh.tensors}
    b = {t.name: t for t in committed.tensors}
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        assert a[name].tensor_type == b[name].tensor_type
        assert np.array_equal(np.asarray(a[name].data), np.asarray(b[name].data)), name
