"""Token NLLs of a text under a loaded model: the engines perplexity and prompt ranking run on.

Both engines answer the same question, ``nll(ids)``: the negative log-likelihood of each token
of ``ids`` after the first, given the tokens before it.

- ``transformers``: the model's own forward pass (the reference; any device, any precision).
- ``ctranslate2``: the same weights converted to CTranslate2 in float32 (a LoRA adapter merged
  into them first). On a CPU it scores the same numbers about 1.7 times as fast
  (``python -m bench.perplexity``; the two agree to about 1e-5 relative, which
  ``tests/test_scoring.py`` checks on the tiny models and the bench on real stories).

``auto`` (the default of ``eval compare``) takes CTranslate2 where it gives the same numbers: an
fp32 model on the CPU of an architecture CTranslate2 converts; else transformers.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from pathlib import Path

import torch

ENGINES = ("auto", "transformers", "ctranslate2")


class ScoringError(RuntimeError):
    """An engine that cannot score this model."""


class TorchNLL:
    """Token NLLs from the model's own forward pass."""

    name = "transformers"

    def __init__(self, model):
        self.model = model
        self.config = model.config

    @torch.no_grad()
    def __call__(self, ids: list[int]) -> torch.Tensor:
        device = next(self.model.parameters()).device
        chunk = torch.tensor(ids, device=device).unsqueeze(0)
        logits = self.model(input_ids=chunk).logits[0, :-1].float()
        return torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="none").cpu()


class Ct2NLL:
    """Token NLLs from the same weights in CTranslate2 (float32, on the CPU).

    CTranslate2 (4.8) fails on a text longer than a sliding-attention window (Gemma 3's 512
    tokens): such a text is scored by the model's own forward pass instead, and counted in
    ``fallbacks``.
    """

    name = "ctranslate2"

    def __init__(self, generator, tokenizer, model):
        self.generator = generator
        self.tokenizer = tokenizer
        self.config = model.config
        """The converted model's transformers config (its context length)."""
        self.fallback = TorchNLL(model)
        self.fallbacks = 0
        types = getattr(self.config, "layer_types", None) or ()
        sliding = getattr(self.config, "sliding_window", None)
        self.longest = sliding if sliding and "sliding_attention" in types else None
        """The longest text CTranslate2 scores (None: no limit)."""

    def __call__(self, ids: list[int]) -> torch.Tensor:
        if self.longest is not None and len(ids) > self.longest:  # (fits: equal, tested)
            self.fallbacks += 1
            return self.fallback(ids)
        tokens = self.tokenizer.convert_ids_to_tokens(list(ids))
        (result,) = self.generator.score_batch([tokens], max_input_length=0)
        return -torch.tensor(result.log_probs, dtype=torch.float32)

    @classmethod
    def convert(cls, model, tokenizer, threads: int = 0) -> Ct2NLL:
        """Convert ``model`` (a LoRA adapter merged into a copy of it) and load it."""
        import ctranslate2
        from ctranslate2.converters import TransformersConverter

        if not ct2_can_score(model):
            raise ScoringError(ct2_refusal(model))
        merged = model
        if hasattr(model, "merge_and_unload"):  # a peft model: merge into a copy
            merged = copy.deepcopy(model).merge_and_unload()
        with tempfile.TemporaryDirectory(prefix="storygen-ct2-") as tmp:
            hf, out = Path(tmp) / "hf", Path(tmp) / "ct2"
            merged.save_pretrained(hf)
            tokenizer.save_pretrained(hf)
            TransformersConverter(str(hf), low_cpu_mem_usage=True).convert(
                str(out), quantization="float32"
            )
            _check_vocabulary(out, tokenizer)
            generator = ctranslate2.Generator(
                str(out), device="cpu", compute_type="float32", intra_threads=threads
            )
        engine = cls(generator, tokenizer, model)
        engine.check()
        return engine

    def check(self, n: int = 48, tolerance: float = 1e-4) -> None:
        """Score ``n`` fixed token ids with both engines; raise unless they agree.

        The converter reads only the settings it knows (for Gemma 3 it assumes the attention
        scale is the head size, as in the released models): this catches a model it would
        convert into another one.
        """
        vocab = len(self.tokenizer)
        n = min(n, self.longest or n)
        ids = [(7919 * i + 13) % vocab for i in range(n)]
        ours, reference = self(ids), self.fallback(ids)
        worst = float(((ours - reference).abs() / reference.abs().clamp(min=1.0)).max())
        if worst > tolerance:
            raise ScoringError(
                f"CTranslate2's conversion of this {type(self.config).__name__} scores "
                f"differently (relative difference up to {worst:.1e}): score with engine "
                "transformers"
            )


def _check_vocabulary(model_dir: Path, tokenizer) -> None:
    """The converted model's tokens are the tokenizer's, id for id (tokens travel as text)."""
    path = model_dir / "vocabulary.json"
    if path.exists():
        vocab = json.loads(path.read_text())
    else:
        vocab = (model_dir / "vocabulary.txt").read_text().split("\n")[: len(tokenizer)]
    ours = tokenizer.convert_ids_to_tokens(list(range(len(vocab))))
    if vocab != ours:
        first = next(i for i, (a, b) in enumerate(zip(vocab, ours, strict=False)) if a != b)
        raise ScoringError(
            f"CTranslate2's vocabulary differs from the tokenizer's at id {first} "
            f"({vocab[first]!r} vs {ours[first]!r}): score with engine transformers"
        )


def ct2_can_score(model) -> bool:
    return ct2_refusal(model) == ""


def ct2_refusal(model) -> str:
    """Why CTranslate2 would not give this model's numbers ("" when it would)."""
    try:
        import ctranslate2  # noqa: F401
        from ctranslate2.converters.transformers import _MODEL_LOADERS
    except ImportError:
        return "ctranslate2 is not installed (pip install -r requirements.txt)"
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    param = next(base.parameters())
    if param.device.type != "cpu":
        return f"the model is on {param.device.type}; CTranslate2 scores it on the CPU only"
    if getattr(base, "is_loaded_in_4bit", False) or getattr(base, "is_loaded_in_8bit", False):
        return "the model is quantized (NF4/int8); CTranslate2 would score other weights"
    if param.dtype != torch.float32:
        return f"the model is in {param.dtype}; CTranslate2 is used for float32 only"
    config = type(base.config).__name__
    if config not in _MODEL_LOADERS:
        return f"CTranslate2 does not convert {config}"
    return ""


def resolve_engine(model, engine: str = "auto") -> str:
    """The engine that will score ``model``: ``auto`` resolved; a refused request raises."""
    if engine not in ENGINES:
        raise ScoringError(f"unknown scoring engine {engine!r}; known: {', '.join(ENGINES)}")
    if engine == "auto":
        return "ctranslate2" if ct2_can_score(model) else "transformers"
    if engine == "ctranslate2" and not ct2_can_score(model):
        raise ScoringError(f"scoring engine ctranslate2: {ct2_refusal(model)}")
    return engine


class Engine:
    """Token NLLs of one model through the chosen engine, built on first use (a conversion to
    CTranslate2 takes tens of seconds, and a comparison whose scores are all saved needs none).
    Under ``auto``, a conversion that does not pass its check falls back to the forward pass.
    """

    def __init__(self, model, tokenizer, engine: str = "auto", threads: int = 0):
        self.requested = engine
        self.name = resolve_engine(model, engine)
        """The engine scoring (or about to score) this model."""
        self.config = model.config
        self._model, self._tokenizer, self._threads = model, tokenizer, threads
        self._impl = None

    def __call__(self, ids: list[int]) -> torch.Tensor:
        if self._impl is None:
            self._impl = self._build()
            self.name = self._impl.name
        return self._impl(ids)

    def _build(self):
        if self.name == "ctranslate2":
            try:
                return Ct2NLL.convert(self._model, self._tokenizer, self._threads)
            except ScoringError as exc:
                if self.requested != "auto":
                    raise
                warnings.warn(f"{exc}; scoring with transformers", stacklevel=3)
        return TorchNLL(self._model)
