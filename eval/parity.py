"""Parity of the llama.cpp backend with the transformers reference: the same weights scored and
written by both engines (``python -m bench.parity`` prints it on real stories; the tests hold it
to the levels measured).

Both sides run the same weights: transformers in fp32 dequantized from the embedded GGUF (Q4_1
for SmolLM2, Q4_K_M for Gemma 3) with the peft demo adapter, llama.cpp on the GGUF itself with
the adapter's GGUF form. They still differ, because llama.cpp multiplies 4-bit weights by
8-bit-quantized activations. So this compares what matters and says how close:

- the mean per-token loss of stories after their tagged prompts, with and without the adapter,
  and the adapter's effect (loss without minus loss with) on each;
- teacher-forced agreement: at how many story positions both pick the same most likely token;
- greedy continuations of example requests through each backend's own generation path: how many
  tokens agree before the first divergence, and how near a tie that divergence is for
  transformers (its log-probability of its own token minus that of llama.cpp's: a divergence
  from quantized activations is at a near-tie, a wrong weight or prompt is not).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from storygen.backends.llamacpp import SCORED_TOKENS, LlamaScorer, nll_and_argmax, token_ids
from storygen.config import EMBEDDED, ModelSpec, SamplingConfig
from storygen.loading import prompt_ids
from storygen.prompt_format import tagged_prompt
from storygen.request import StoryRequest

ROOT = Path(__file__).resolve().parent.parent
MAX_TOKENS = SCORED_TOKENS  # prompt + story tokens scored per story

__all__ = ["HFScorer", "LlamaScorer", "measure", "nll_and_argmax", "story_losses", "token_ids"]


def example_requests(n: int) -> list[StoryRequest]:
    lines = (ROOT / "examples" / "requests.jsonl").read_text().splitlines()
    requests = [StoryRequest.from_dict(json.loads(line)) for line in lines if line.strip()]
    return (requests * (n // len(requests) + 1))[:n]


class HFScorer:
    """Every position's logits from transformers (fp32 from the GGUF, peft adapter or none)."""

    def __init__(self, adapter: str | None, base: str = EMBEDDED):
        from storygen.backends.hf import TransformersBackend

        self.backend = TransformersBackend.load(
            ModelSpec(base=base, adapter=adapter, backend="transformers", quantization="fp32")
        )

    def tokenize(self, text: str) -> list[int]:
        return self.backend.lm.tokenizer(text, add_special_tokens=False).input_ids

    def prompt_ids(self, text: str) -> list[int]:
        return prompt_ids(self.backend.lm.tokenizer, text)

    def logits(self, ids: list[int]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.backend.lm.model(input_ids=torch.tensor([ids])).logits[0].numpy()


def story_losses(scorer, stories: list[tuple[str, str]]):
    """Per story: (mean NLL of its story tokens, top-token ids at those positions)."""
    out = []
    for prompt, story in stories:
        ids, n_prompt = token_ids(prompt, story, scorer)
        nll, top = nll_and_argmax(scorer.logits(ids), ids, n_prompt)
        out.append((float(nll.mean()), top))
    return out


def greedy_tokens(backend, request: StoryRequest, n: int) -> list[int]:
    """The first ``n`` greedy tokens of a story, from the backend's own token stream (what
    generation reads; without its loop cut, so both engines give ``n`` tokens and every
    divergence is seen)."""
    from storygen.generation import DecodeStats

    greedy = SamplingConfig(temperature=0, repetition_penalty=1.0)
    backend.check_sampling(greedy, False)
    stream = backend.tokens(tagged_prompt(request), greedy, n, DecodeStats(), stop_on_eos=False)
    try:
        return [int(t) for _, t in zip(range(n), stream, strict=False)]
    finally:
        stream.close()


def divergence_gap(scorer: HFScorer, prompt: list[int], ours: list[int], theirs: list[int]):
    """At the first token where two greedy continuations of ``prompt`` differ, transformers'
    log-probability of its own token minus that of the other's (nats; None if they agree)."""
    from storygen.backends.llamacpp import common_prefix

    k = common_prefix(ours, theirs)
    if k >= min(len(ours), len(theirs)):
        return None
    logits = scorer.logits(prompt + ours[:k])[-1].astype(np.float64)
    return float(logits[ours[k]] - logits[theirs[k]])  # the log-normalizer cancels


def measure(
    stories: list[tuple[str, str]],
    n_prompts: int,
    n_tokens: int,
    threads: int = 2,
    base: str = EMBEDDED,
) -> dict:
    """All parity figures in one dict (see the module docstring)."""
    from storygen.backends.llamacpp import LlamaCppBackend, common_prefix

    result: dict = {"stories": len(stories), "base": base}
    hf_demo = HFScorer("demo", base)
    if stories:
        losses = {}
        for adapter in ("demo", None):
            hf = story_losses(hf_demo if adapter else HFScorer(None, base), stories)
            lc = story_losses(LlamaScorer(adapter, threads, base), stories)
            key = adapter or "base"
            losses[key] = (hf, lc)
            hf_mean = float(np.mean([x for x, _ in hf]))
            lc_mean = float(np.mean([x for x, _ in lc]))
            same = sum(int((a == b).sum()) for (_, a), (_, b) in zip(hf, lc))
            total = sum(len(a) for _, a in hf)
            result[key] = {
                "hf_loss": hf_mean,
                "llamacpp_loss": lc_mean,
                "loss_rel_diff": abs(lc_mean - hf_mean) / hf_mean,
                "max_story_rel_diff": max(abs(b[0] - a[0]) / a[0] for a, b in zip(hf, lc)),
                "top1_agreement": same / total,
            }
        hf_effect = [b[0] - a[0] for a, b in zip(losses["demo"][0], losses["base"][0])]
        lc_effect = [b[0] - a[0] for a, b in zip(losses["demo"][1], losses["base"][1])]
        result["adapter_effect"] = {
            "hf_mean": float(np.mean(hf_effect)),
            "llamacpp_mean": float(np.mean(lc_effect)),
            "effect_correlation": float(np.corrcoef(hf_effect, lc_effect)[0, 1]),
        }
    requests = example_requests(n_prompts)
    hf = hf_demo.backend
    lc = LlamaCppBackend(ModelSpec(base=base, adapter="demo", threads=threads))
    prefixes, gaps = [], []
    for r in requests:
        ours, theirs = greedy_tokens(hf, r, n_tokens), greedy_tokens(lc, r, n_tokens)
        prefixes.append(common_prefix(ours, theirs))
        gap = divergence_gap(hf_demo, hf.tokenize(tagged_prompt(r)), ours, theirs)
        if gap is not None:
            gaps.append(gap)
    result["greedy"] = {
        "prompts": len(requests),
        "tokens": n_tokens,
        "agreeing_prefix": prefixes,
        "divergence_gaps": gaps,
        "all_agree": sum(p == n_tokens for p in prefixes),
    }
    return result
