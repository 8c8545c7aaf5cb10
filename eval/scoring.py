"""Token NLLs of a text under a loaded model: what perplexity and prompt ranking rest on.

``nll(ids)`` is the negative log-likelihood of each token of ``ids`` after the first, given the
tokens before it, from the model's own forward pass (any device, any precision).
"""

from __future__ import annotations

import torch


def default_window(model) -> int:
    """The tokens a model sees at once when scoring: its context, at most 2048."""
    return int(min(getattr(model.config, "max_position_embeddings", 2048) or 2048, 2048))


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
