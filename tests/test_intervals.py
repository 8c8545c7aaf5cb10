"""Bootstrap intervals and paired differences of comparison figures."""

import math

import numpy as np
import pytest

from eval.intervals import figures, interval, paired_difference


def test_a_constant_figure_has_a_zero_width_interval():
    rows = [{"id": str(i), "arc_match": 1.0} for i in range(20)]
    assert interval("arc_match", rows) == [1.0, 1.0]
    assert all(math.isnan(x) for x in interval("arc_match", []))


def test_perplexity_is_a_ratio_of_sums_and_its_interval_holds_it():
    rows = [{"id": "a", "nll": 10.0, "tokens": 5}, {"id": "b", "nll": 30.0, "tokens": 20}]
    assert figures(rows) == ["token_ppl"]
    lo, hi = interval("token_ppl", rows)
    point = math.exp(40 / 25)  # not the mean of per-story perplexities (exp 2, exp 1.5)
    assert (
        lo <= point <= hi
        and lo == pytest.approx(math.exp(1.5))
        and hi == pytest.approx(math.exp(2))
    )


def test_the_interval_of_a_mean_matches_the_normal_approximation():
    values = np.random.default_rng(1).normal(0.5, 0.2, 400)
    rows = [{"id": str(i), "beat_coverage": v} for i, v in enumerate(values)]
    lo, hi = interval("beat_coverage", rows)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.15)
    assert (lo + hi) / 2 == pytest.approx(values.mean(), abs=0.2 * half)


def test_paired_differences_resample_the_same_items_for_both_systems():
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 50)
    a = [{"id": str(i), "arc_correlation": v} for i, v in enumerate(base)]
    b = [{"id": str(i), "arc_correlation": v + 0.1} for i, v in enumerate(base)]
    same = paired_difference("arc_correlation", a, a)
    assert same["difference"] == 0 and same["ci95"] == [0.0, 0.0] and same["n_items"] == 50
    shifted = paired_difference("arc_correlation", a, b)
    assert shifted["difference"] == pytest.approx(0.1)
    assert shifted["ci95"] == pytest.approx([0.1, 0.1])  # unpaired, the intervals would overlap
    lo_a, hi_a = interval("arc_correlation", a)
    lo_b, hi_b = interval("arc_correlation", b)
    assert lo_b < hi_a
    # Only the items both systems scored count.
    assert paired_difference("arc_correlation", a, b[:10])["n_items"] == 10


def test_a_difference_counts_only_the_items_where_both_systems_have_the_figure():
    """Arc scores exist only for stories long enough to measure: a paired difference must not
    compare one system's measured items with another's."""
    a = [{"id": str(i), "arc_match": 1.0 if i < 5 else 0.0} for i in range(10)]
    b = [{"id": str(i), **({"arc_match": 1.0} if i < 5 else {})} for i in range(10)]
    d = paired_difference("arc_match", a, b)
    assert d["difference"] == 0.0 and d["ci95"] == [0.0, 0.0] and d["n_items"] == 5
