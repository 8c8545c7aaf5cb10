"""The shared sampler against transformers' logits processors, its plain definition."""

import numpy as np
import pytest
import torch
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from storygen.config import SamplingConfig
from storygen.sampling import Sampler

SETTINGS = [
    SamplingConfig(),
    SamplingConfig(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0),
    SamplingConfig(temperature=0.3, top_p=0.5, top_k=0, repetition_penalty=1.3),
    SamplingConfig(temperature=1.7, top_p=0.99, top_k=7, repetition_penalty=2.5),
    SamplingConfig(temperature=0.9, top_p=0.05, top_k=200, repetition_penalty=1.0),
    SamplingConfig(temperature=1.2, top_p=1.0, top_k=1, repetition_penalty=1.0),
]


def reference_distribution(logits: np.ndarray, generated: list[int], s: SamplingConfig):
    """The probabilities transformers' processors give, in the order our sampler applies them."""
    scores = torch.tensor(logits, dtype=torch.float64)[None]
    seen = torch.tensor([generated])
    if generated and s.repetition_penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(s.repetition_penalty)(seen, scores)
    scores = TemperatureLogitsWarper(s.temperature)(seen, scores)
    if s.top_k:
        scores = TopKLogitsWarper(s.top_k)(seen, scores)
    if s.top_p < 1.0:
        scores = TopPLogitsWarper(s.top_p)(seen, scores)
    return torch.softmax(scores, -1)[0].numpy()


@pytest.mark.parametrize("settings", SETTINGS, ids=str)
def test_distribution_equals_transformers_processors(settings):
    rng = np.random.default_rng(0)
    for _ in range(20):
        logits = (rng.standard_normal(500) * rng.uniform(0.5, 6)).astype(np.float32)
        generated = rng.integers(0, 500, size=int(rng.integers(0, 40))).tolist()
        sampler = Sampler(settings)
        ids, probs = sampler.candidates(sampler.penalized(logits, generated))
        ours = np.zeros(500)
        ours[ids] = probs
        np.testing.assert_allclose(
            ours, reference_distribution(logits, generated, settings), atol=1e-7
        )


def test_draws_follow_the_distribution():
    """10,000 draws land on each candidate as often as its probability says (chi-square)."""
    from scipy.stats import chisquare

    settings = SamplingConfig(temperature=1.0, top_k=5, top_p=1.0, repetition_penalty=1.0)
    logits = np.array([2.0, 1.5, 1.0, 0.5, 0.0, -5.0, -6.0], dtype=np.float32)
    sampler = Sampler(settings)
    draws = np.array([sampler(logits, []) for _ in range(10_000)])
    counts = np.bincount(draws, minlength=7)
    assert counts[5] == counts[6] == 0  # outside the top 5
    ids, probs = sampler.candidates(sampler.penalized(logits, []))
    expected = np.zeros(7)
    expected[ids] = probs * 10_000
    assert chisquare(counts[:5], expected[:5]).pvalue > 0.001


def test_penalty_touches_only_the_story_tokens():
    sampler = Sampler(SamplingConfig(repetition_penalty=2.0))
    logits = np.array([4.0, -4.0, 4.0, -4.0], dtype=np.float32)
    np.testing.assert_array_equal(sampler.penalized(logits, [0, 1, 0]), [2.0, -8.0, 4.0, -4.0])


def test_greedy_takes_the_penalized_argmax():
    sampler = Sampler(SamplingConfig(temperature=0, repetition_penalty=3.0))
    logits = np.array([3.0, 2.0, 0.5], dtype=np.float32)
    assert sampler(logits, []) == 0
    assert sampler(logits, [0]) == 1  # 3 / 3 = 1 < 2


def test_same_seed_same_draws_other_seed_differs():
    logits = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    settings = SamplingConfig(top_k=0, top_p=1.0, temperature=1.5, seed=11)

    def draws(s):
        sampler = Sampler(s)
        return [sampler(logits, []) for _ in range(50)]

    assert draws(settings) == draws(settings)
    assert draws(settings) != draws(SamplingConfig(top_k=0, top_p=1.0, temperature=1.5, seed=12))


@pytest.mark.parametrize("top_p", [0.5, 0.25, 0.75])
def test_a_token_whose_cumulative_mass_is_exactly_one_minus_top_p_is_dropped(top_p):
    """Four equally likely tokens: the low tail whose mass is exactly 1 - top_p goes, as in
    transformers' TopPLogitsWarper (cumulative <= 1 - top_p), keeping top_p of the mass."""
    logits = np.zeros(4, dtype=np.float32)
    settings = SamplingConfig(temperature=1.0, top_p=top_p, top_k=0, repetition_penalty=1.0)
    ids, probs = Sampler(settings).candidates(logits)
    reference = reference_distribution(logits, [], settings)
    assert len(ids) == round(4 * top_p) == np.count_nonzero(reference)
    np.testing.assert_allclose(np.sort(probs), np.sort(reference[reference > 0]))


def test_huge_logits_still_give_a_proper_distribution():
    """The softmax is shifted by the largest candidate: logits in the thousands (a model made
    very sure) give finite probabilities that sum to 1, not overflow."""
    sampler = Sampler(SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0))
    logits = np.array([0.0, 1.0, 2.0, 900.0, 1000.0])
    ids, probs = sampler.candidates(sampler.penalized(logits, []))
    assert np.all(np.isfinite(probs)) and probs.sum() == pytest.approx(1.0)
    assert ids[-1] == 4 and probs[-1] == pytest.approx(1.0)
    assert sampler(logits, []) == 4
    nucleus = Sampler(SamplingConfig(temperature=1.0, top_k=0, top_p=0.9, repetition_penalty=1.0))
    ids, probs = nucleus.candidates(nucleus.penalized(logits, []))  # renormalised after top-p
    assert list(ids) == [4] and probs.tolist() == [1.0]


class LastDraw:
    """A random source whose every draw is the largest number below 1."""

    def random(self):
        return np.nextafter(1.0, 0.0)


def test_a_draw_past_the_rounded_cumulative_sum_takes_the_last_candidate():
    """The cumulative sum (summed in order) can end a hair below the total (summed pairwise):
    a draw in that gap takes the last candidate instead of running off the end."""
    settings = SamplingConfig(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    sampler, rng = Sampler(settings), np.random.default_rng(0)
    for _ in range(1000):  # logits whose two sums differ in the last bit
        logits = rng.normal(0, 3, 50)
        ids, probs = sampler.candidates(sampler.penalized(logits, []))  # as the draw sees them
        if LastDraw().random() * probs.sum() >= np.cumsum(probs)[-1]:
            break
    else:
        pytest.fail("no logits found whose sums differ")
    sampler.rng = LastDraw()
    assert sampler(logits, []) == ids[-1]
