"""Choosing the next token from logits: one sampler for every backend that computes logits locally.

The transformers and llama.cpp backends both hand their logits to :class:`Sampler`, so the same
settings mean the same thing on both (an OpenAI-compatible server samples on its own side). The
steps and their order are transformers' logits processors: repetition penalty (over the story's
own tokens, not the prompt), temperature, top-k, top-p, then a draw. ``tests/test_sampling.py``
checks the distribution against transformers' ``RepetitionPenaltyLogitsProcessor``,
``TemperatureLogitsWarper``, ``TopKLogitsWarper`` and ``TopPLogitsWarper``.

Each request draws from its own ``numpy.random.Generator`` seeded with the request's seed, so
concurrent users cannot disturb each other's stories and the same seed gives the same story.
"""

from __future__ import annotations

import numpy as np

from storygen.config import SamplingConfig


class Sampler:
    """The next-token choice for one request; holds that request's random generator."""

    def __init__(self, sampling: SamplingConfig):
        self.sampling = sampling
        self.rng = np.random.Generator(np.random.PCG64(sampling.seed))

    def penalized(self, logits: np.ndarray, generated: list[int]) -> np.ndarray:
        """A float32 copy of ``logits`` with the repetition penalty applied to ``generated``."""
        scores = np.array(logits, dtype=np.float32)
        p = self.sampling.repetition_penalty
        if generated and p != 1.0:
            seen = np.unique(np.asarray(generated, dtype=np.int64))
            s = scores[seen]
            scores[seen] = np.where(s < 0, s * p, s / p)
        return scores

    def candidates(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, probabilities) that remain after temperature, top-k and top-p.

        Only called with temperature > 0. Works on the top-k candidates alone, which gives the
        same distribution as masking the whole vocabulary (the masked tokens have probability 0);
        a positive temperature does not change which tokens are the top k, so it is applied to
        the candidates only, in float64.
        """
        s = self.sampling
        k = s.top_k
        if 0 < k < scores.size:
            kth = scores[np.argpartition(scores, -k)[-k:]].min()
            ids = np.flatnonzero(scores >= kth)  # ties at the k-th value stay, as in transformers
        else:
            ids = np.flatnonzero(np.isfinite(scores))
        cand = scores[ids].astype(np.float64) / s.temperature
        order = np.argsort(cand, kind="stable")  # ascending, like TopPLogitsWarper
        ids, cand = ids[order], cand[order]
        probs = np.exp(cand - cand[-1])
        probs /= probs.sum()
        if s.top_p < 1.0:
            # Drop the low tail whose mass stays within 1 - top_p; the most likely token stays.
            drop = np.cumsum(probs) <= 1 - s.top_p
            drop[-1] = False
            ids, cand = ids[~drop], cand[~drop]
            probs = np.exp(cand - cand[-1])
            probs /= probs.sum()
        return ids, probs

    def __call__(self, logits: np.ndarray, generated: list[int]) -> int:
        """The next token after ``generated`` (the story so far, prompt excluded)."""
        scores = self.penalized(logits, generated)
        if self.sampling.temperature == 0:
            return int(np.argmax(scores))
        ids, probs = self.candidates(scores)
        at = np.searchsorted(np.cumsum(probs), self.rng.random() * probs.sum(), side="right")
        return int(ids[min(at, ids.size - 1)])
