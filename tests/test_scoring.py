"""The scoring engines give the reference path's numbers: CTranslate2 against the forward pass."""

import random

import pytest
import torch

from eval.perplexity import story_nll
from eval.scoring import Ct2NLL, Engine, ScoringError, TorchNLL, resolve_engine

from .conftest import copy_text


def _texts(tok, words, n=3):
    rng = random.Random(5)
    return [copy_text(rng, words) for _ in range(n)]


def test_ctranslate2_scores_what_the_forward_pass_scores(context_lm):
    model, tok, words = context_lm
    ct2, ref = Ct2NLL.convert(model, tok), TorchNLL(model)
    for text in _texts(tok, words):
        ids = tok(text, add_special_tokens=False).input_ids
        a, b = ref(ids), ct2(ids)
        assert a.shape == b.shape == (len(ids) - 1,)
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4), (a - b).abs().max()
        # The model reads its context (the repeats are near-certain), so an engine that dropped
        # or shifted context could not agree with it.
        assert float(a[-16:].mean()) < 0.5 < float(a[:7].mean())
    # Whole stories through the sliding window (several windows each): the same sums.
    for text in _texts(tok, words):
        w = story_nll(ref.model, tok, "A prompt:", text, window=16, stride=8)
        c = story_nll(ct2, tok, "A prompt:", text, window=16, stride=8)
        assert (w.tokens, w.words) == (c.tokens, c.words)
        assert c.nll == pytest.approx(w.nll, rel=1e-5)


def test_an_adapter_is_merged_into_a_copy_before_conversion(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    ids = tok("The dragon flew over the kingdom. The wizard cast a spell.").input_ids
    bare = TorchNLL(base)(ids)
    torch.manual_seed(0)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in peft.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.5)
    engine = Engine(peft, tok, "ctranslate2")
    assert engine.name == "ctranslate2"
    adapted = TorchNLL(peft)(ids)
    assert not torch.allclose(adapted, bare, atol=1e-3)  # the adapter changes the scores
    assert torch.allclose(engine(ids), adapted, rtol=1e-4, atol=1e-4)
    assert any("lora_B" in n for n, _ in peft.named_parameters())  # the model itself unmerged


def test_auto_keeps_the_forward_pass_where_ctranslate2_would_score_other_weights(tiny_model_dir):
    from transformers import LlamaForCausalLM

    fp32 = LlamaForCausalLM.from_pretrained(tiny_model_dir)
    assert resolve_engine(fp32, "auto") == "ctranslate2"
    half = LlamaForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    assert resolve_engine(half, "auto") == "transformers"
    with pytest.raises(ScoringError, match="bfloat16"):
        resolve_engine(half, "ctranslate2")
    with pytest.raises(ScoringError, match="unknown scoring engine 'fast'"):
        resolve_engine(fp32, "fast")


def test_an_nf4_model_is_scored_by_its_own_forward_pass(tiny_model_dir):
    from storygen.config import ModelSpec
    from storygen.loading import load_model

    lm = load_model(ModelSpec(base=str(tiny_model_dir), adapter=None, quantization="nf4"))
    assert resolve_engine(lm.model, "auto") == "transformers"
    with pytest.raises(ScoringError, match="quantized"):
        Engine(lm.model, lm.tokenizer, "ctranslate2")


def _tiny_llama(folder, tok, **config):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    settings = dict(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
    )  # fmt: skip
    model = LlamaForCausalLM(LlamaConfig(**{**settings, **config}))
    model.save_pretrained(folder)
    return LlamaForCausalLM.from_pretrained(folder)


def test_an_embedding_padded_past_the_tokenizer_still_converts(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = _tiny_llama(tmp_path / "padded", tok, vocab_size=len(tok) + 8)
    ids = tok("The ship drifted past the planet.").input_ids
    engine = Engine(model, tok, "ctranslate2")
    assert torch.allclose(engine(ids), TorchNLL(model)(ids), rtol=1e-4, atol=1e-4)


def test_a_model_the_converter_refuses_is_scored_by_its_forward_pass(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    # CTranslate2 has no dynamic RoPE scaling: its converter raises NotImplementedError.
    scaled = {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0}
    model = _tiny_llama(tmp_path / "dynamic", tok, rope_parameters=scaled)
    ids = tok("The ship drifted past the planet.").input_ids
    with pytest.raises(ScoringError, match="cannot convert"):
        Engine(model, tok, "ctranslate2")(ids)
    auto = Engine(model, tok)
    with pytest.warns(UserWarning, match="scoring with transformers instead"):
        got = auto(ids)
    assert auto.name == "transformers" and torch.equal(got, TorchNLL(model)(ids))
    assert auto.texts == {"transformers": 1}
