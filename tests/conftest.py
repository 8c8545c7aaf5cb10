"""Shared fixtures: a tiny LLaMA and byte-level BPE tokenizer built in-process (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(1)

FIXTURES = Path(__file__).parent / "fixtures"

CORPUS = [
    "Once upon a time, Mara walked to the lighthouse. The sea was dark and cold.",
    "Jonah was curious. He asked why the light had gone out, and Mara laughed.",
    "<|request|>\ngenre: mystery\ncharacters: Mara (stubborn, kind)\n<|story|>\n",
    "The dragon flew over the kingdom. The wizard cast a spell on the castle.",
    "The ship drifted past the planet. Aliens watched from their station in orbit.",
    "She smiled. They were home at last, safe and together, and the war was over.",
] * 20


def tiny_bpe(special_tokens: list[str]):
    """A byte-level BPE tokenizer (384 tokens) trained on CORPUS, specials first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """Save a 2-layer LLaMA (hidden 64) and a byte-level BPE tokenizer to ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = tiny_bpe(["<unk>", "<s>", "</s>"])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def make_vote(annotator="ann", item="i1", left="base", right="tuned", choice="left", **kw):
    """A Vote with the usual test defaults; any other field by keyword."""
    from human_ratings.store import Vote

    return Vote(
        annotator=annotator, item_id=item, system_left=left, system_right=right, choice=choice, **kw
    )


def copy_text(rng, words: list[str], block: int = 8, times: int = 6) -> str:
    """A random block of words said ``times`` times: after the first, every token can be
    predicted from the token ``block`` places before it, and from nothing else."""
    return " ".join(rng.sample(words, block) * times)


def examples(n: int) -> int:
    """Hypothesis examples for a property test: ``n``, or a tenth under mutation testing, where
    the test runs once per mutant (mutmut sets MUTANT_UNDER_TEST)."""
    return max(20, n // 10) if os.environ.get("MUTANT_UNDER_TEST") else n


@pytest.fixture(scope="session")
def context_lm(tmp_path_factory):
    """The tiny model trained here, for a few hundred steps, to copy (``copy_text`` over words
    that are one token each, so the block repeats every 8 tokens): unlike the random model it
    depends on its context, so a scorer that drops context scores it worse. Returns (model,
    tokenizer, words)."""
    import random

    from transformers import AutoTokenizer, LlamaForCausalLM

    folder = build_tiny_model(tmp_path_factory.mktemp("copy-llama"), seed=1)
    tok = AutoTokenizer.from_pretrained(folder)
    model = LlamaForCausalLM.from_pretrained(folder)
    words = sorted({w.strip('.,;:!?"') for t in CORPUS for w in t.split()} - {""})
    words = [w for w in words if len(tok(" " + w, add_special_tokens=False).input_ids) == 1]
    rng = random.Random(0)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(350):
        batch = [tok(copy_text(rng, words), add_special_tokens=False).input_ids for _ in range(16)]
        n = min(map(len, batch))
        x = torch.tensor([b[:n] for b in batch])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, tok, words


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    """The tiny model loaded through the real loader, in fp32 without adapter."""
    from storygen.config import ModelSpec
    from storygen.loading import load_model

    return load_model(ModelSpec(base=str(tiny_model_dir), adapter=None, quantization="fp32"))


@pytest.fixture(scope="session")
def tiny_backend(tiny_lm):
    """The tiny model on the transformers backend."""
    from storygen.backends.hf import TransformersBackend

    return TransformersBackend(tiny_lm)


@pytest.fixture
def request_two_characters():
    from storygen.request import Character, Setting, StoryRequest

    return StoryRequest(
        characters=[Character("Mara", ["stubborn", "kind"]), Character("Jonah", ["curious"])],
        setting=Setting("a lighthouse", "the 1920s"),
        genre="mystery",
        ending="happy",
        length="flash",
    )
