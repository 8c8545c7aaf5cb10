"""Best-of-n writing: write n stories, keep the one the judges say follows the request best.

Candidate k is written with the request's seed plus k (candidate 0 is the story n = 1 would
give). Each is judged (:mod:`storygen.judges`: the share of the request's measured fields it
follows, the judges' mean probability breaking ties). A guard keeps the judges from trading
the prose away: a candidate counts only if its per-token perplexity under the base model (no
adapter) is at most :data:`PPL_MARGIN` (5%) higher than candidate 0's, so the story kept is at
most that much less likely, by that measure, than the one n = 1 gives. The guard runs on
llama.cpp for a GGUF base; for another base, or when candidate 0 cannot be scored (too short),
it is off, and the provenance says so.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace
from functools import cache

import numpy as np

from storygen.config import SamplingConfig
from storygen.request import StoryRequest

PPL_MARGIN = 0.05
MAX_ATTEMPTS = 8


class BasePerplexity:
    """Per-token perplexity of a text under a GGUF base model alone (no adapter)."""

    def __init__(self, base: str = "embedded"):
        from llama_cpp import Llama

        from storygen.backends.llamacpp import resolve_gguf_base

        path, _ = resolve_gguf_base(base)
        self.llm = Llama(
            model_path=str(path), n_ctx=2048, logits_all=True, n_threads=2, verbose=False
        )
        self._lock = threading.Lock()

    def __call__(self, text: str) -> float:
        bos = self.llm.tokenize(b"", add_bos=True, special=False)
        ids = self.llm.tokenize(text.encode(), add_bos=False, special=False)[:2000]
        ids = (bos or self.llm.tokenize(b"\n", add_bos=False, special=False)) + ids
        if len(ids) < 3:
            return float("nan")
        with self._lock:
            self.llm.reset()
            self.llm.eval(ids)
            logits = np.asarray(self.llm.scores[: len(ids) - 1], dtype=np.float64)
        m = logits.max(axis=1, keepdims=True)
        logz = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        nll = logz - logits[np.arange(len(ids) - 1), ids[1:]]
        return float(math.exp(nll.mean()))


@cache
def base_perplexity(base: str) -> BasePerplexity:
    return BasePerplexity(base)


def guard_for(backend) -> BasePerplexity | None:
    """The base model's perplexity for this backend's base, when it is a GGUF base."""
    from storygen.embedded import embedded_model

    base = getattr(getattr(backend, "spec", None), "base", None) or "embedded"
    if embedded_model(base) is None and not str(base).lower().endswith(".gguf"):
        return None
    return base_perplexity(base)


def score(judgement) -> tuple[float, float]:
    """(share of measured fields followed, mean probability of those that have one)."""
    followed = [v.followed for v in judgement.verdicts if v.followed is not None]
    probs = [v.probability for v in judgement.verdicts if v.probability is not None]
    share = sum(followed) / len(followed) if followed else 0.0
    return share, (sum(probs) / len(probs) if probs else 0.0)


def choose(candidates: list[dict], margin: float = PPL_MARGIN) -> int:
    """The index of the candidate to keep (each: ``score`` and ``base_ppl``, NaN when the
    guard is off): the best score among those within the perplexity margin of candidate 0."""
    first = candidates[0]["base_ppl"]
    allowed = [
        i
        for i, c in enumerate(candidates)
        if i == 0 or math.isnan(first) or c["base_ppl"] <= first * (1 + margin)
    ]
    return max(allowed, key=lambda i: (candidates[i]["score"], -i))


def attempt_sampling(sampling: SamplingConfig, k: int) -> SamplingConfig:
    return replace(sampling, seed=(sampling.seed + k) % 2**63)


def judge_candidate(story_text: str, request: StoryRequest, guard) -> dict:
    from storygen.judges import judge

    j = judge(story_text, request)
    return {
        "score": score(j),
        "adherence": j.adherence,
        "base_ppl": guard(story_text) if guard is not None and story_text.strip() else float("nan"),
    }


def provenance_of(candidates: list[dict], chosen: int, seeds: list[int], guard) -> dict:
    return {
        "n": len(candidates),
        "chosen": chosen,
        "seeds": seeds,
        "adherence": [c["adherence"] for c in candidates],
        "base_ppl": [
            None if math.isnan(c["base_ppl"]) else round(c["base_ppl"], 3) for c in candidates
        ],
        "guard": (
            "off"
            if guard is None
            else "off (attempt 1 could not be scored)"
            if math.isnan(candidates[0]["base_ppl"])
            else f"base perplexity at most {PPL_MARGIN:.0%} above attempt 1's"
        ),
    }


def stream_best(
    backend,
    request: StoryRequest,
    sampling: SamplingConfig,
    attempts: int,
    stop_event: threading.Event | None = None,
    plan=None,
):
    """Stream ``attempts`` stories one after another (``(attempt, update)`` pairs; the text of
    each attempt streams as a story does), then yield ``(None, update)`` whose story is the one
    kept, with ``provenance["attempts"]`` saying which and why. Stop ends the attempt being
    written; the one kept is chosen among those finished (or it is the stopped first one)."""
    from storygen.generation import StoryUpdate, stream_story

    if (
        isinstance(attempts, bool)
        or not isinstance(attempts, int)
        or not 1 <= attempts <= MAX_ATTEMPTS
    ):
        raise ValueError(f"attempts must be a whole number from 1 to {MAX_ATTEMPTS}")
    guard = guard_for(backend) if attempts > 1 else None
    stories, candidates, seeds = [], [], []
    t0 = time.perf_counter()
    for k in range(attempts):
        sampling_k = attempt_sampling(sampling, k)
        last = None
        for update in stream_story(backend, request, sampling_k, stop_event, plan=plan):
            if update.story is not None:
                last = update.story
            else:
                yield k, update
        stopped = last.stop_reason == "stopped"
        if stopped and stories:
            break  # keep the finished ones
        stories.append(last)
        seeds.append(sampling_k.seed)
        if attempts > 1:
            candidates.append(judge_candidate(last.text, request, guard))
        if stopped:
            break
    chosen = choose(candidates) if len(candidates) > 1 else 0
    story = stories[chosen]
    if attempts > 1:
        story.provenance["attempts"] = provenance_of(candidates, chosen, seeds, guard)
        # every attempt, the judging and the guard: what the reader waited for
        story.provenance["attempts"]["seconds"] = round(time.perf_counter() - t0, 3)
    yield None, StoryUpdate("", story.text, story)


def generate_best(backend, request, sampling, attempts: int, plan=None):
    """The kept story of :func:`stream_best`, without streaming."""
    for _, update in stream_best(backend, request, sampling, attempts, plan=plan):
        if update.story is not None:
            last = update
    return last.story
