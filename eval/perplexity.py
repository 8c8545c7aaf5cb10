"""Perplexity of held-out stories under a loaded model, story tokens only.

Token-level perplexity is exp(total NLL / story tokens). Word-level perplexity is exp(total NLL
/ whitespace words) — the same total NLL spread over words, which compares across tokenizers and
with Fan et al. 2018 (fusion model: 36.56 on the test set, stories cut to 1000 words).
Stories longer than the window are scored with a sliding window: every story token is scored
once, each with up to ``window - stride`` tokens of preceding context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from tqdm import tqdm

from eval.metric import Figure, Item, Metric, exp, ratio_of
from eval.scoring import TorchNLL, default_window
from storygen.loading import prompt_ids


@dataclass
class NLL:
    """Summed negative log-likelihood and what it was summed over."""

    nll: float = 0.0
    tokens: int = 0
    words: int = 0

    def __iadd__(self, other: NLL) -> NLL:
        self.nll += other.nll
        self.tokens += other.tokens
        self.words += other.words
        return self

    def summary(self) -> dict[str, float]:
        return {
            "token_ppl": math.exp(self.nll / self.tokens) if self.tokens else float("nan"),
            "word_ppl": math.exp(self.nll / self.words) if self.words else float("nan"),
            "nll_per_token": self.nll / self.tokens if self.tokens else float("nan"),
            "tokens": self.tokens,
            "words": self.words,
        }


def story_nll(
    model,
    tokenizer,
    prompt: str,
    story: str,
    window: int | None = None,
    stride: int | None = None,
    max_tokens: int | None = None,
) -> NLL:
    """NLL of ``story`` given ``prompt``, summed over the story's tokens (its first
    ``max_tokens`` only, when given: the words counted are then those of that part).

    ``model`` is a transformers model or a token-NLL function (:class:`eval.scoring.TorchNLL`)."""
    nll_of = TorchNLL(model) if isinstance(model, torch.nn.Module) else model
    window = window or default_window(nll_of)
    stride = stride or window // 2
    if not 0 < stride <= window:
        raise ValueError("need 0 < stride <= window")
    p = prompt_ids(tokenizer, prompt)
    s = tokenizer(story, add_special_tokens=False).input_ids
    if max_tokens is not None and len(s) > max_tokens:
        s = s[:max_tokens]
        story = tokenizer.decode(s)
    ids = p + s
    # Positions before scored_to are context only. The very first token of a text has no
    # context and cannot be scored, so an empty prompt scores the story from its second token.
    total, count, scored_to = 0.0, 0, max(len(p), 1)
    while scored_to < len(ids):
        end = min(scored_to + stride, len(ids))
        begin = max(0, end - window)
        nll = nll_of(ids[begin:end])
        first = max(scored_to - begin - 1, 0)  # index in targets of the first unscored token
        total += float(nll[first:].sum())
        count += nll[first:].numel()
        scored_to = end
    return NLL(total, count, len(story.split()))


def perplexity(
    model,
    tokenizer,
    pairs: list[tuple[str, str]],
    window: int | None = None,
    stride: int | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Corpus perplexity over (prompt, story) pairs: exp of the mean NLL over all story tokens."""
    acc = NLL()
    for prompt, story in tqdm(pairs, desc="perplexity", disable=not progress):
        acc += story_nll(model, tokenizer, prompt, story, window, stride)
    return acc.summary()


def _score(item: Item) -> dict[str, float]:
    """The reference story's NLL under the system's weights, after the system's own prompt."""
    lm, o = item.scorer.lm, item.options
    nll = story_nll(
        lm.model,
        lm.tokenizer,
        item.prompts[item.index],
        item.reference,
        o.get("window"),
        o.get("stride"),
        o.get("max_story_tokens"),
    )
    return {"nll": nll.nll, "tokens": nll.tokens, "words": nll.words}


def _figures(rows: list[dict]) -> list[Figure]:
    return [
        Figure("token_ppl", ratio_of("nll", "tokens", exp), "tokens"),
        Figure("word_ppl", ratio_of("nll", "words", exp), "words"),
        Figure("nll_per_token", ratio_of("nll", "tokens"), "tokens"),
    ]


METRIC = Metric(
    "perplexity", "scorer", _score, _figures, options=("window", "stride", "max_story_tokens")
)
