"""Every statistic the Results tab shows, checked against independent references: scipy,
statsmodels and the ``krippendorff`` package, and published worked examples with their source.
Random data (hypothesis) covers what the worked examples do not."""

import math
import random

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.stats import binomtest
from statsmodels.stats import inter_rater

from human_ratings.stats import (
    agreement,
    bradley_terry,
    bradley_terry_ci,
    cohen_kappa,
    fleiss_kappa,
    krippendorff_alpha,
    ordered,
    percentile_interval,
    position_bias,
    summary,
    wilson,
    win_rates,
)
from human_ratings.store import Vote

from .conftest import examples, make_vote

# --- Wilson interval and the position-bias test: scipy's binomtest ---------------------------


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (8, 10), (0, 25), (25, 25), (13, 40), (501, 999)])
def test_wilson_and_position_bias_match_scipy_binomtest(k, n):
    votes = [make_vote(annotator=f"a{i}", item=f"i{i}", choice="left") for i in range(k)]
    votes += [make_vote(annotator=f"b{i}", item=f"j{i}", choice="right") for i in range(n - k)]
    votes += [make_vote(annotator="c", item="tie", choice="tie")]  # not decisive: not counted
    pb = position_bias(votes)
    ref = binomtest(k, n, 0.5)
    ci = ref.proportion_ci(confidence_level=0.95, method="wilson")
    assert pb["decisive_votes"] == n and pb["left_wins"] == k
    assert pb["left_win_rate"] == pytest.approx(k / n, abs=1e-12)
    assert (pb["ci_low"], pb["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-9)
    assert pb["p_value"] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)


def test_no_decisive_vote_gives_no_rate_and_the_whole_interval():
    assert wilson(0, 0) == (0.0, 1.0)
    assert all(wilson(n, n)[1] <= 1.0 and wilson(0, n)[0] >= 0.0 for n in range(1, 300))
    pb = position_bias([make_vote(choice="tie"), make_vote(annotator="b", choice="both_bad")])
    assert pb["decisive_votes"] == 0 and (pb["ci_low"], pb["ci_high"]) == (0.0, 1.0)
    assert math.isnan(pb["left_win_rate"]) and math.isnan(pb["p_value"])
    (only_ties,) = [r for r in win_rates([make_vote(choice="tie")]) if r["system"] == "base"]
    assert math.isnan(only_ties["win_rate"]) and (only_ties["ci_low"], only_ties["ci_high"]) == (
        0.0,
        1.0,
    )


def test_win_rates_count_every_outcome_on_both_sides():
    votes = [
        make_vote("a", "1", "A", "B", "left"),  # A wins from the left
        make_vote("a", "2", "B", "A", "right"),  # A wins from the right
        make_vote("a", "3", "B", "A", "left"),  # B wins
        make_vote("a", "4", "A", "B", "tie"),
        make_vote("a", "4b", "B", "A", "tie"),
        make_vote("a", "5", "B", "A", "both_bad"),
        make_vote("a", "5b", "A", "B", "both_bad"),
        make_vote("a", "6", "A", "C", "right"),  # C wins
    ]
    rows = {r["system"]: r for r in win_rates(votes)}
    a = rows["A"]
    assert (a["games"], a["wins"], a["losses"], a["ties"], a["both_bad"]) == (8, 2, 2, 2, 2)
    assert a["win_rate"] == 0.5
    ci = binomtest(2, 4).proportion_ci(method="wilson")
    assert (a["ci_low"], a["ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-9)
    b = rows["B"]
    assert (b["games"], b["wins"], b["losses"], b["ties"], b["both_bad"]) == (7, 1, 2, 2, 2)
    assert (rows["C"]["wins"], rows["C"]["losses"]) == (1, 0) and rows["C"]["win_rate"] == 1.0


# --- Bradley-Terry: the maximum-likelihood fit by scipy's BFGS --------------------------------

PRIOR = 0.25  # pseudo-wins each way between every pair (documented in bradley_terry)


def _bt_reference(votes: list[Vote]) -> dict[str, float]:
    """Maximise the Bradley-Terry log-likelihood directly: a tie is half a win each way,
    "both bad" says nothing about the order, plus the prior. Centred log-strengths."""
    systems = sorted({s for v in votes for s in (v.system_left, v.system_right)})
    idx = {s: i for i, s in enumerate(systems)}
    w = np.full((len(systems), len(systems)), PRIOR)
    np.fill_diagonal(w, 0.0)
    for v in votes:
        i, j = idx[v.system_left], idx[v.system_right]
        if v.choice == "left":
            w[i, j] += 1
        elif v.choice == "right":
            w[j, i] += 1
        elif v.choice == "tie":
            w[i, j] += 0.5
            w[j, i] += 0.5

    def nll(theta):
        d = theta[:, None] - theta[None, :]
        return -(w * (d - np.logaddexp(0, d))).sum()

    fit = minimize(nll, np.zeros(len(systems)), method="BFGS", options={"gtol": 1e-10})
    theta = fit.x - fit.x.mean()
    return dict(zip(systems, theta))


def _bt_votes(seed: int) -> list[Vote]:
    """Unequal systems, ties only with A on the left, "both bad" only between B and C, so a
    tie credited to one side or "both bad" counted as a tie moves the fit."""
    rng = random.Random(seed)
    strength = {"A": 2.0, "B": 1.0, "C": 0.4, "D": 0.7}
    votes = []
    for n in range(120):
        left, right = rng.sample(sorted(strength), 2)
        p_left = strength[left] / (strength[left] + strength[right])
        choice = "left" if rng.random() < p_left else "right"
        votes.append(make_vote(f"x{n}", f"i{n}", left, right, choice))
    votes += [make_vote(f"t{n}", f"t{n}", "A", "C", "tie") for n in range(6)]
    votes += [make_vote(f"b{n}", f"b{n}", "B", "C", "both_bad") for n in range(9)]
    rng.shuffle(votes)  # "both bad" votes anywhere, not only at the end
    return votes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bradley_terry_is_the_maximum_likelihood_fit(seed):
    votes = _bt_votes(seed)
    ours, ref = bradley_terry(votes), _bt_reference(votes)
    assert ours.keys() == ref.keys()
    for s in ref:
        assert ours[s] == pytest.approx(ref[s], abs=1e-6), (s, ours, ref)


def test_bradley_terry_keeps_an_unbeaten_system_finite_and_says_odds():
    votes = [make_vote(f"a{i}", f"i{i}", "A", "B", "left") for i in range(5)]
    bt = bradley_terry(votes)
    ref = _bt_reference(votes)
    assert bt["A"] == pytest.approx(ref["A"], abs=1e-6) and math.isfinite(bt["A"])
    # Two systems: odds e^(sA - sB) = (5 + prior) / prior.
    assert math.exp(bt["A"] - bt["B"]) == pytest.approx((5 + PRIOR) / PRIOR, rel=1e-6)


def test_no_votes_have_nothing_to_rank():
    assert bradley_terry([]) == {} and bradley_terry_ci([]) == []


def test_percentile_interval_is_numpys_lower_and_higher_percentile():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 40, 41, 81, 199, 200, 201):
        xs = list(rng.normal(size=n))
        lo, hi = percentile_interval(xs)
        assert lo == np.percentile(xs, 2.5, method="lower")
        assert hi == np.percentile(xs, 97.5, method="higher")


@pytest.mark.parametrize("rare", [False, True])
def test_bradley_terry_interval_is_the_bootstrap_percentile_interval(rare):
    votes, rounds, seed = _bt_votes(3), 60, 11
    if rare:  # E plays once: many resamples lack it, and then it scores 0 (no information)
        votes.append(make_vote("e", "e", "E", "A", "left"))
    rng = random.Random(seed)
    boots = [bradley_terry([rng.choice(votes) for _ in votes], iters=100) for _ in range(rounds)]
    rows = bradley_terry_ci(votes, rounds=rounds, seed=seed)
    point = bradley_terry(votes)
    assert [r["system"] for r in rows] == sorted(point, key=lambda s: -point[s])
    assert not rare or sum("E" not in b for b in boots) > rounds / 5  # about 1/e of them
    for r in rows:
        lo, hi = percentile_interval([b.get(r["system"], 0.0) for b in boots])
        assert (r["ci_low"], r["bt_score"], r["ci_high"]) == (lo, point[r["system"]], hi)


# --- Agreement: published worked examples ----------------------------------------------------

# Krippendorff, K. (2011). Computing Krippendorff's alpha-reliability, section C: 4 coders,
# 12 units, missing values. Published: nominal 0.743, ordinal 0.815, interval 0.849.
K2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]


def _units(coders: list[list]) -> list[list]:
    return [[c[u] for c in coders if c[u] is not None] for u in range(len(coders[0]))]


@pytest.mark.parametrize(
    "level,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_alpha_matches_krippendorff_2011(level, published):
    assert krippendorff_alpha(_units(K2011), level) == pytest.approx(published, abs=5e-4)


def test_krippendorff_alpha_is_ordinal_by_default_and_refuses_unknown_levels():
    units = _units(K2011)
    assert krippendorff_alpha(units) == krippendorff_alpha(units, "ordinal")
    with pytest.raises(ValueError, match="unknown measurement level 'ratio'"):
        krippendorff_alpha(units, "ratio")


def test_fleiss_kappa_matches_the_fleiss_1971_style_example_of_14_raters():
    # Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories,
    # kappa = 0.210 (statsmodels agrees: 0.20993).
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    units = [[cat + 1 for cat, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(units) == pytest.approx(0.20993, abs=5e-5)
    assert fleiss_kappa(units) == pytest.approx(
        inter_rater.fleiss_kappa(np.array(table)), abs=1e-12
    )


def test_cohen_kappa_matches_the_textbook_two_by_two_example():
    # Wikipedia, "Cohen's kappa", example 1: 50 proposals, po = 0.7, pe = 0.5 -> 0.4.
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_undefined_agreement_is_nan_never_perfect():
    assert math.isnan(fleiss_kappa([])) and math.isnan(fleiss_kappa([[1, 2], [1, 2, 2]]))
    assert math.isnan(cohen_kappa(["x"] * 5, ["x"] * 5))
    assert math.isnan(fleiss_kappa([[3, 3, 3]] * 4))
    assert math.isnan(krippendorff_alpha([[3, 3, 3]] * 4, "ordinal"))
    assert math.isnan(cohen_kappa([], []))


def test_ordinal_values_are_ordered_as_numbers_not_as_text():
    assert ordered([10, 2, 1]) == [1, 2, 10]
    assert ordered(["b", "a"]) == ["a", "b"]
    assert ordered([10, "b", 2]) == [10, 2, "b"]  # mixed: all by text
    data = [[1, 2], [2, 2], [1, 1], [10, 2], [10, 10], [1, 10], [2, 2]]
    relabelled = [[{1: 1, 2: 2, 10: 3}[x] for x in u] for u in data]
    # Ordinal alpha depends only on the order of the values, so relabelling keeps it.
    assert krippendorff_alpha(data, "ordinal") == pytest.approx(
        krippendorff_alpha(relabelled, "ordinal"), abs=1e-12
    )


# --- Agreement: random data against the reference packages -----------------------------------

ratings = st.lists(
    st.lists(st.one_of(st.none(), st.sampled_from([1, 2, 3, 5, 10])), min_size=2, max_size=5),
    min_size=2,
    max_size=12,
).map(lambda units: [u + [None] * (5 - len(u)) for u in units])


@settings(max_examples=examples(150), deadline=None)
@given(ratings, st.sampled_from(["nominal", "ordinal", "interval"]))
def test_krippendorff_alpha_matches_the_krippendorff_package(units, level):
    data = np.array([[np.nan if x is None else x for x in u] for u in units], dtype=float).T
    ours = krippendorff_alpha([[x for x in u if x is not None] for u in units], level)
    pairable = [u for u in units if sum(x is not None for x in u) >= 2]
    if len({x for u in pairable for x in u if x is not None}) < 2:
        assert math.isnan(ours)
        return
    ref = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert ours == pytest.approx(ref, abs=1e-9)


@settings(max_examples=examples(150), deadline=None)
@given(
    st.integers(2, 6),
    st.lists(st.lists(st.integers(1, 5), min_size=6, max_size=6), min_size=1, max_size=15),
)
def test_fleiss_kappa_matches_statsmodels(n_raters, rows):
    units = [u[:n_raters] for u in rows]
    table, _ = inter_rater.aggregate_raters(np.array(units))
    ours = fleiss_kappa(units)
    if len({x for u in units for x in u}) < 2:
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-9)


@settings(max_examples=examples(150), deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 4)), min_size=1, max_size=40))
def test_cohen_kappa_matches_statsmodels(pairs):
    a, b = [p[0] for p in pairs], [p[1] for p in pairs]
    ours = cohen_kappa(a, b)
    if len(set(a) | set(b)) < 2:
        assert math.isnan(ours)
        return
    cats = sorted(set(a) | set(b))
    table = np.zeros((len(cats), len(cats)))
    for x, y in pairs:
        table[cats.index(x), cats.index(y)] += 1
    ref = inter_rater.cohens_kappa(table, return_results=False)
    assert ours == pytest.approx(ref, abs=1e-9)


# --- The agreement table: what each figure rests on ------------------------------------------


def _rows(votes) -> dict[tuple[str, str], dict]:
    return {(r["criterion"], r["statistic"].split(" (")[0]): r for r in agreement(votes)}


def test_agreement_rows_say_what_they_rest_on():
    votes = []
    # 4 items rated by x, y, z; 2 more rated by x and y only: Fleiss uses the 4 with three.
    for i in range(6):
        raters = ("x", "y", "z") if i < 4 else ("x", "y")
        for j, a in enumerate(raters):
            votes.append(
                make_vote(
                    a,
                    f"i{i}",
                    "A",
                    "B",
                    ("right", "left", "tie")[(i + j) % 3],  # three kinds: nominal, not ordinal
                    left_coherence=1 + (i + j) % 5,
                    right_coherence=1 + (2 * i + j) % 4,
                )
            )
    rows = _rows(votes)
    fleiss = rows[("coherence", "Fleiss' kappa")]
    units = [[1 + (i + j) % 5 for j in range(3)] for i in range(4)]
    units += [[1 + (2 * i + j) % 4 for j in range(3)] for i in range(4)]
    assert fleiss["status"] == "ok" and fleiss["units"] == 8 and fleiss["unit"] == "stories"
    assert fleiss["raters"] == 3 and "3 ratings per unit" in fleiss["statistic"]
    assert fleiss["value"] == pytest.approx(fleiss_kappa(units))
    alpha = rows[("coherence", "Krippendorff's alpha")]
    assert alpha["units"] == 12 and alpha["raters"] == 3 and alpha["status"] == "ok"
    all_units = units + [[1 + (i + j) % 5 for j in range(2)] for i in (4, 5)]
    all_units += [[1 + (2 * i + j) % 4 for j in range(2)] for i in (4, 5)]
    assert alpha["value"] == pytest.approx(krippendorff_alpha(all_units, "ordinal"))
    assert all(
        r["unit"] == ("items" if r["criterion"] == "choice" else "stories") for r in rows.values()
    )
    cohen = rows[("coherence", "Cohen's kappa")]
    assert cohen["status"] == "n/a" and "exactly two" in cohen["note"]
    choice = rows[("choice", "Krippendorff's alpha")]
    assert choice["units"] == 6 and choice["unit"] == "items"
    kinds = ("B", "A", "tie")
    choices = [[kinds[(i + j) % 3] for j in range(n)] for i, n in enumerate([3] * 4 + [2] * 2)]
    assert choice["value"] == pytest.approx(krippendorff_alpha(choices, "nominal"))
    assert "nominal" in [r for r in agreement(votes) if r["criterion"] == "choice"][0]["statistic"]


def test_all_ratings_equal_is_reported_undefined_not_perfect():
    votes = [
        make_vote(a, f"i{i}", "A", "B", "left", left_engagement=3, right_engagement=3)
        for i in range(6)
        for a in ("x", "y", "z")
    ]
    rows = _rows(votes)
    for stat in ("Krippendorff's alpha", "Fleiss' kappa"):
        r = rows[("engagement", stat)]
        assert r["status"] == "undefined" and math.isnan(r["value"]), r
        assert "every rating is 3" in r["note"] and r["units"] == 12 and r["raters"] == 3
    # A criterion nobody rated does not apply at all.
    for stat in ("Krippendorff's alpha", "Cohen's kappa", "Fleiss' kappa"):
        empty = rows[("coherence", stat)]
        assert empty["status"] == "n/a" and empty["units"] == 0 and empty["unit"] == "stories"
        assert empty["note"] == "no story rated by two annotators yet"
    assert {r["unit"] for r in rows.values() if r["criterion"] == "choice"} == {"items"}


def test_two_annotators_get_cohen_on_the_units_both_rated():
    votes = [
        make_vote(a, f"i{i}", "A", "B", c)
        for i, (ca, cb) in enumerate(
            [
                ("left", "left"),
                ("right", "right"),
                ("left", "right"),
                ("tie", "both_bad"),
                ("left", "left"),
            ]
        )
        for a, c in (("x", ca), ("y", cb))
    ]
    votes.append(make_vote("x", "solo", "A", "B", "left"))  # rated by one annotator only
    rows = _rows(votes)
    cohen = rows[("choice", "Cohen's kappa")]
    ref = cohen_kappa(["A", "B", "A", "tie", "A"], ["A", "B", "B", "both_bad", "A"])
    assert cohen["status"] == "ok" and cohen["units"] == 5 and cohen["raters"] == 2
    assert cohen["unit"] == "items"
    assert cohen["value"] == pytest.approx(ref)
    fleiss = rows[("choice", "Fleiss' kappa")]
    assert fleiss["status"] == "n/a" and fleiss["note"] == "needs three or more annotators"
    assert fleiss["unit"] == "items"


def test_summary_bootstraps_as_many_rounds_as_asked():
    votes = _bt_votes(4)
    assert summary(votes, bootstrap_rounds=15)["bradley_terry"] == bradley_terry_ci(votes, 15)


def test_nothing_rated_twice_yet_says_so_per_unit_kind():
    rows = _rows([make_vote("x", "i1", "A", "B", "left", left_coherence=4)])
    for (criterion, _), r in rows.items():
        one = "item" if criterion == "choice" else "story"
        assert r["status"] == "n/a" and r["note"] == f"no {one} rated by two annotators yet"
