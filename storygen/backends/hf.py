"""The transformers backend: torch weights (NF4/int8/bf16/fp32) + peft, loaded by
:mod:`storygen.loading`. The reference path, for GPUs and for the parity tests of the others."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import DynamicCache

from storygen.backends.base import LocalBackend
from storygen.config import ModelSpec
from storygen.loading import LoadedModel, leading_ids, load_model, with_leading
from storygen.prompt_format import Prompt


class TransformersBackend(LocalBackend):
    name = "transformers"

    def __init__(self, lm: LoadedModel):
        self.lm = lm
        self.spec = lm.spec
        self.base_id = lm.base_id
        self.adapter_meta = lm.adapter_meta
        self._eos = eos_ids(lm)

    @classmethod
    def load(cls, spec: ModelSpec) -> TransformersBackend:
        return cls(load_model(spec))

    def quantization(self) -> str:
        return self.spec.quantization or "nf4"

    def device(self) -> str:
        return str(self.lm.device)

    def chat_template(self):
        tok = self.lm.tokenizer
        template = getattr(tok, "chat_template", None)
        if not isinstance(template, str):
            return None
        specials = {
            name: str(getattr(tok, name))
            for name in ("bos_token", "eos_token", "unk_token", "pad_token")
            if getattr(tok, name, None) is not None
        }
        return template, specials

    def tokenize(self, prompt: Prompt) -> list[int]:
        tok = self.lm.tokenizer
        ids: list[int] = []
        for text, special in prompt.parts:
            ids += tok(text, add_special_tokens=False, split_special_tokens=not special).input_ids
        return with_leading(leading_ids(tok), ids)

    def count_tokens(self, text: str) -> int:
        return len(self.lm.tokenizer(text, add_special_tokens=False).input_ids)

    def detokenize(self, tokens) -> str:
        return self.lm.tokenizer.decode(tokens, skip_special_tokens=True)

    def is_eos(self, token: int) -> bool:
        return token in self._eos

    @contextmanager
    def session(self):
        model, device = self.lm.model, self.lm.device
        cache = DynamicCache()

        def forward(ids: list[int]):
            with torch.inference_mode():
                # Only the last position's logits are needed: on the prompt pass that saves the
                # LM head over every prompt token (~150 ms of first-token latency here).
                out = model(
                    input_ids=torch.tensor([ids], device=device),
                    cache=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
            return out.logits[0, -1].float().cpu().numpy()

        yield forward


def eos_ids(lm: LoadedModel) -> set[int]:
    """Every token id that ends a story: the tokenizer's EOS and the model's configured ones."""
    ids = getattr(lm.model.generation_config, "eos_token_id", None)
    ids = set(ids if isinstance(ids, (list, tuple)) else [ids] if ids is not None else [])
    return (ids | {lm.tokenizer.eos_token_id}) - {None}
