"""Token NLLs of a text under a loaded model: the engines perplexity and prompt ranking run on.

Both engines answer the same question, ``nll(ids)``: the negative log-likelihood of each token
of ``ids`` after the first, given the tokens before it.

- ``transformers``: the model's own forward pass (the reference; any device, any precision).
- ``ctranslate2``: the same weights converted to CTranslate2 in float32 (a LoRA adapter merged
  into them first). It scores the same numbers (about 5e-6 apart, relative; checked by
  ``tests/test_scoring.py`` on the tiny models and ``python -m bench.perplexity`` on real
  stories), but on an idle 2-core CPU it was 0.86 to 1.15 times as fast as the forward pass in
  two runs, after a conversion of about 20 s: no reliable gain there, so ``eval compare``
  defaults to ``transformers``.

``auto`` takes CTranslate2 where it gives the same numbers (an fp32 model on the CPU of an
architecture CTranslate2 converts, passing the check below); else transformers.
"""

from __future__ import annotations

import copy
import json
import tempfile
import warnings
from collections import Counter
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
    tokens): such a text is scored by the model's own forward pass instead.
    """

    name = "ctranslate2"

    def __init__(self, generator, tokenizer, model):
        self.generator = generator
        self.tokenizer = tokenizer
        self.config = model.config
        """The converted model's transformers config (its context length)."""
        self.fallback = TorchNLL(model)
        self.last = self.name
        """The engine that scored the last text (``transformers`` when it was too long)."""
        text = getattr(self.config, "text_config", self.config)
        types = getattr(text, "layer_types", None) or ()
        sliding = getattr(text, "sliding_window", None)
        self.longest = sliding if sliding and "sliding_attention" in types else None
        """The longest text CTranslate2 scores (None: no limit)."""

    def __call__(self, ids: list[int]) -> torch.Tensor:
        if self.longest is not None and len(ids) > self.longest:  # (fits: equal, tested)
            self.last = self.fallback.name
            return self.fallback(ids)
        self.last = self.name
        tokens = self.tokenizer.convert_ids_to_tokens(list(ids))
        (result,) = self.generator.score_batch([tokens], max_input_length=0)
        return -torch.tensor(result.log_probs, dtype=torch.float32)

    @classmethod
    def convert(cls, model, tokenizer, threads: int = 0) -> Ct2NLL:
        """Convert ``model`` (a LoRA adapter merged into a copy of it), load it, and check it
        against the model's forward pass. Needs temporary disk of about twice the model's fp32
        size (the merged checkpoint and the converted one, both deleted once loaded)."""
        if not ct2_can_score(model):
            raise ScoringError(ct2_refusal(model))
        try:
            import ctranslate2
            from ctranslate2.converters import TransformersConverter

            with tempfile.TemporaryDirectory(prefix="storygen-ct2-") as tmp:
                hf, out = Path(tmp) / "hf", Path(tmp) / "ct2"
                if hasattr(model, "merge_and_unload"):  # a peft model: merge into a copy
                    merged = copy.deepcopy(model).merge_and_unload()
                    merged.save_pretrained(hf)
                    del merged
                else:
                    model.save_pretrained(hf)
                tokenizer.save_pretrained(hf)
                TransformersConverter(str(hf), low_cpu_mem_usage=True).convert(
                    str(out), quantization="float32"
                )
                _check_vocabulary(out, tokenizer, model.config)
                generator = ctranslate2.Generator(
                    str(out), device="cpu", compute_type="float32", intra_threads=threads
                )
        except ScoringError:
            raise
        except Exception as exc:  # the converter's own refusals: settings it cannot convert
            raise ScoringError(
                f"CTranslate2 cannot convert this model ({type(exc).__name__}: {exc})"
            ) from exc
        engine = cls(generator, tokenizer, model)
        engine.check()
        return engine

    def check(self, tolerance: float = 1e-4) -> None:
        """Score fixed token ids, as many as a window holds, with both engines; raise unless
        they agree.

        The converter reads only the settings it knows (for Gemma 3 it assumes the attention
        scale is the head size, as in the released models; position scalings show far into a
        text): this catches a model it would convert into another one.
        """
        from eval.perplexity import default_window

        vocab = min(len(self.tokenizer), _vocab_size(self.config))
        n = min(default_window(self), self.longest or 2048)
        ids = [(7919 * i + 13) % vocab for i in range(n)]
        ours, reference = self(ids), self.fallback(ids)
        worst = float(((ours - reference).abs() / reference.abs().clamp(min=1.0)).max())
        if worst > tolerance:
            raise ScoringError(
                f"CTranslate2's conversion of this {type(self.config).__name__} scores "
                f"differently (relative difference up to {worst:.1e})"
            )


def _vocab_size(config) -> int:
    return getattr(config, "text_config", config).vocab_size


def _check_vocabulary(model_dir: Path, tokenizer, config) -> None:
    """The converted model's tokens are the tokenizer's, id for id, and no two alike (tokens
    travel as text). Ids past the tokenizer (an embedding padded to a round size) never occur
    in a text and are not compared."""
    vocab = json.loads((model_dir / "vocabulary.json").read_text())
    n = min(len(tokenizer), _vocab_size(config))
    ours = tokenizer.convert_ids_to_tokens(list(range(n)))
    if len(vocab) < n or vocab[:n] != ours:
        first = next(
            (i for i, (a, b) in enumerate(zip(vocab, ours, strict=False)) if a != b), len(vocab)
        )
        theirs = vocab[first] if first < len(vocab) else None
        raise ScoringError(
            f"CTranslate2's vocabulary differs from the tokenizer's at id {first} "
            f"({theirs!r} vs {ours[first]!r})"
        )
    if len(set(ours)) != n:
        raise ScoringError("the tokenizer has two ids with the same token text")


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
    Under ``auto``, a conversion that fails or does not pass its check falls back to the
    forward pass, with a warning; asked for explicitly, it raises :class:`ScoringError`.
    """

    def __init__(self, model, tokenizer, engine: str = "auto", threads: int = 0):
        self.requested = engine
        self.name = resolve_engine(model, engine)
        """The engine scoring (or about to score) this model."""
        self.config = model.config
        self.texts = Counter()
        """How many texts each engine scored (a long text goes to the forward pass)."""
        self._model, self._tokenizer = model, tokenizer
        self._threads = threads or torch.get_num_threads()  # CTranslate2's own default is 4
        self._impl = None

    def __call__(self, ids: list[int]) -> torch.Tensor:
        if self._impl is None:
            self._impl = self._build()
            self.name = self._impl.name
        out = self._impl(ids)
        self.texts[getattr(self._impl, "last", self.name)] += 1
        return out

    def _build(self):
        if self.name == "ctranslate2":
            try:
                return Ct2NLL.convert(self._model, self._tokenizer, self._threads)
            except ScoringError as exc:
                if self.requested != "auto":
                    raise
                warnings.warn(f"{exc}; scoring with transformers instead", stacklevel=3)
        return TorchNLL(self._model)
