"""Prompt ranking (Fan et al. 2018, section 5.2): is a story more likely under its own prompt
than under 9 prompts drawn from other stories? Chance is 10%."""

from __future__ import annotations

import random

from tqdm import tqdm

from eval.perplexity import story_nll


def prompt_ranking(
    model,
    tokenizer,
    prompts: list[str],
    stories: list[str],
    distractors: int = 9,
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
    rng = random.Random(seed)
    wins = 0
    for i in tqdm(range(n), desc="prompt ranking", disable=not progress):
        others = rng.sample([j for j in range(n) if j != i], distractors)
        # Every candidate prompt scores the same story opening: ten forward passes per story.
        story = " ".join(stories[i].split()[:max_words])
        true = story_nll(model, tokenizer, prompts[i], story).nll
        wins += all(true < story_nll(model, tokenizer, prompts[j], story).nll for j in others)
    return {"prompt_ranking_acc": wins / n, "prompt_ranking_n": n, "chance": 1 / (distractors + 1)}
