"""Bootstrap intervals and paired differences of comparison figures."""

import math

import numpy as np
import pytest

from eval.intervals import interval, paired_difference
from eval.metric import Figure, mean_of
from eval.registry import figures_for


def F(name):
    """A figure that is the mean of its own per-item key (arc and beat scores are)."""
    return Figure(name, mean_of(name), name)


def test_a_constant_figure_has_a_zero_width_interval():
    rows = [{"id": str(i), "arc_match": 1.0} for i in range(20)]
    assert interval(F("arc_match"), rows) == [1.0, 1.0]
    assert all(math.isnan(x) for x in interval(F("arc_match"), []))


def test_perplexity_is_a_ratio_of_sums_and_its_interval_holds_it():
    rows = [{"id": "a", "nll": 10.0, "tokens": 5}, {"id": "b", "nll": 30.0, "tokens": 20}]
    ppl = {f.name: f for f in figures_for(rows)}["token_ppl"]
    assert [f.name for f in figures_for(rows)] == ["token_ppl", "nll_per_token"]
    lo, hi = interval(ppl, rows)
    point = math.exp(40 / 25)  # not the mean of per-story perplexities (exp 2, exp 1.5)
    assert (
        lo <= point <= hi
        and lo == pytest.approx(math.exp(1.5))
        and hi == pytest.approx(math.exp(2))
    )


def test_the_interval_of_a_mean_matches_the_normal_approximation():
    values = np.random.default_rng(1).normal(0.5, 0.2, 400)
    rows = [{"id": str(i), "beat_coverage": v} for i, v in enumerate(values)]
    lo, hi = interval(F("beat_coverage"), rows)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert (lo + hi) / 2 == pytest.approx(values.mean(), abs=0.2 * half)


def test_paired_differences_resample_the_same_items_for_both_systems():
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 50)
    a = [{"id": str(i), "arc_correlation": v} for i, v in enumerate(base)]
    b = [{"id": str(i), "arc_correlation": v + 0.1} for i, v in enumerate(base)]
    same = paired_difference(F("arc_correlation"), a, a)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and same["n_items"] == 50
    shifted = paired_difference(F("arc_correlation"), a, b)
    assert shifted["difference"] == pytest.approx(0.1)
    assert shifted["ci95"] == pytest.approx([0.1, 0.1])  # unpaired, the intervals would overlap
    lo_a, hi_a = interval(F("arc_correlation"), a)
    lo_b, hi_b = interval(F("arc_correlation"), b)
    assert lo_b < hi_a
    # Only the items both systems scored count.
    assert paired_difference(F("arc_correlation"), a, b[:10])["n_items"] == 10


def test_a_difference_counts_only_the_items_where_both_systems_have_the_figure():
    """Arc scores exist only for stories long enough to measure: a paired difference must not
    compare one system's measured items with another's."""
    a = [{"id": str(i), "arc_match": 1.0 if i < 5 else 0.0} for i in range(10)]
    b = [{"id": str(i), **({"arc_match": 1.0} if i < 5 else {})} for i in range(10)]
    d = paired_difference(F("arc_match"), a, b)
    assert d["difference"] == 0.0 and d["ci95"] == [0.0, 0.0] and d["n_items"] == 5


def test_the_jackknife_interval_of_a_mean_is_the_textbook_one():
    """Left out one item at a time, the jackknife standard error of a mean is s / sqrt(n)."""
    from eval.metric import JACKKNIFE

    values = np.random.default_rng(3).normal(0.3, 0.1, 40)
    rows = [{"id": str(i), "v": v} for i, v in enumerate(values)]
    lo, hi = interval(Figure("v", mean_of("v"), "v", JACKKNIFE), rows)
    half = 1.959963984540054 * values.std(ddof=1) / math.sqrt(len(values))
    assert (lo + hi) / 2 == pytest.approx(values.mean()) and (hi - lo) / 2 == pytest.approx(half)
    same = paired_difference(Figure("v", mean_of("v"), "v", JACKKNIFE), rows, rows)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0]


def test_the_grouped_jackknife_of_a_mean_matches_its_standard_error():
    """Past 50 items the jackknife leaves out groups; for a mean its interval is still close
    to the textbook one."""
    from eval.metric import JACKKNIFE

    values = np.random.default_rng(4).exponential(1.0, 1000)
    rows = [{"id": str(i), "v": v} for i, v in enumerate(values)]
    lo, hi = interval(Figure("v", mean_of("v"), "v", JACKKNIFE), rows)
    half = 1.959963984540054 * values.std(ddof=1) / math.sqrt(len(values))
    assert (lo + hi) / 2 == pytest.approx(values.mean()) and (hi - lo) / 2 == pytest.approx(
        half, rel=0.3
    )


def test_self_bleu_over_many_stories_reads_them_all_and_its_interval_narrows():
    """Self-BLEU is computed over every story (a sample redrawn for each left-out group would
    add its own noise), so more stories give a narrower interval, not a wider one."""
    from eval.registry import METRICS

    rng = np.random.default_rng(5)
    words = [f"w{i}" for i in range(300)]
    p = 1 / np.arange(1, 301)
    p /= p.sum()
    texts = [" ".join(rng.choice(words, 40, p=p)) for _ in range(400)]
    rows = [{"id": str(i), **METRICS["diversity"].score(_item(t))} for i, t in enumerate(texts)]
    (self_bleu,) = [f for f in figures_for(rows, ["diversity"]) if f.name == "self_bleu"]
    small, large = interval(self_bleu, rows[:100]), interval(self_bleu, rows)
    assert (large[1] - large[0]) < (small[1] - small[0])


def _item(text):
    from eval.metric import Item
    from storygen.request import StoryRequest

    return Item("x", StoryRequest(prompt="x"), "", story=text)
