"""Prompt ranking (Fan et al. 2018, section 5.2): is a story more likely under its own prompt
than under 9 prompts drawn from other stories? Chance is 10%."""

from __future__ import annotations

import random

from tqdm import tqdm

from eval.metric import Figure, Item, Metric, mean_of
from eval.perplexity import story_nll

DISTRACTORS = 9


def ranks_first(
    model,
    tokenizer,
    prompts: list[str],
    i: int,
    story: str,
    distractors: int = DISTRACTORS,
    max_words: int = 200,
    seed: int = 0,
) -> bool:
    """Whether ``story``'s own prompt ``prompts[i]`` gives it a lower NLL than each of
    ``distractors`` other prompts (drawn per item, seeded, so that any item can be scored
    alone and again)."""
    rng = random.Random(f"{seed}:{i}")
    others = rng.sample([j for j in range(len(prompts)) if j != i], distractors)
    # Every candidate prompt scores the same story opening: ten forward passes per story.
    story = " ".join(story.split()[:max_words])
    true = story_nll(model, tokenizer, prompts[i], story).nll
    return all(true < story_nll(model, tokenizer, prompts[j], story).nll for j in others)


def prompt_ranking(
    model,
    tokenizer,
    prompts: list[str],
    stories: list[str],
    distractors: int = DISTRACTORS,
    max_words: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """Share of stories whose true prompt gives the lowest story NLL among 1 + ``distractors``."""
    n = len(prompts)
    if n != len(stories):
        raise ValueError("prompts and stories differ in length")
    if n <= distractors:
        raise ValueError(f"prompt ranking needs more than {distractors} pairs, got {n}")
    wins = sum(
        ranks_first(model, tokenizer, prompts, i, stories[i], distractors, max_words, seed)
        for i in tqdm(range(n), desc="prompt ranking", disable=not progress)
    )
    return {"prompt_ranking_acc": wins / n, "prompt_ranking_n": n, "chance": 1 / (distractors + 1)}


def _score(item: Item) -> dict[str, float]:
    """Fan et al. rank the human story: is it likelier under its own prompt?"""
    lm = item.scorer.lm
    return {
        "prompt_ranking": float(
            ranks_first(lm.model, lm.tokenizer, item.prompts, item.index, item.reference)
        )
    }


def _figures(rows: list[dict]) -> list[Figure]:
    return [Figure("prompt_ranking_acc", mean_of("prompt_ranking"), "prompt_ranking")]


METRIC = Metric(
    "ranking", "scorer", _score, _figures, min_items=DISTRACTORS + 1, reads_all_items=True
)
