"""Statistics over the vote log: win rates, Bradley-Terry ranking, agreement, position bias.

All of it is computed offline from the CSV (``python -m human_ratings stats votes.csv``); the
app's Results tab calls the same functions.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from itertools import combinations

from human_ratings.store import CRITERIA, Vote

Z95 = 1.959963984540054


def wilson(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (well-behaved at small n and near 0/1)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def win_rates(votes: list[Vote]) -> list[dict]:
    """Per system: wins, losses, ties, both-bad, and the decisive win rate with a 95% CI."""
    table: dict[str, Counter] = defaultdict(Counter)
    for v in votes:
        for me, other in ((v.system_left, v.system_right), (v.system_right, v.system_left)):
            table[me]["games"] += 1
            if v.winner == me:
                table[me]["wins"] += 1
            elif v.winner == other:
                table[me]["losses"] += 1
            else:
                table[me][v.choice] += 1
    rows = []
    for system, c in sorted(table.items()):
        decisive = c["wins"] + c["losses"]
        lo, hi = wilson(c["wins"], decisive)
        rows.append(
            {
                "system": system,
                "games": c["games"],
                "wins": c["wins"],
                "losses": c["losses"],
                "ties": c["tie"],
                "both_bad": c["both_bad"],
                "win_rate": c["wins"] / decisive if decisive else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    return rows


def bradley_terry(votes: list[Vote], iters: int = 200, tol: float = 1e-9) -> dict[str, float]:
    """Bradley-Terry strengths by Hunter's MM algorithm; a tie counts half a win each way.

    Returned on a log scale centred at 0 (a difference of 1 means e:1 odds of winning). A tiny
    prior (half a tie against every other system) keeps unbeaten systems finite.
    """
    systems = sorted({s for v in votes for s in (v.system_left, v.system_right)})
    if len(systems) < 2:
        return {s: 0.0 for s in systems}
    wins: dict[tuple[str, str], float] = defaultdict(float)
    for a, b in combinations(systems, 2):
        for x, y in ((a, b), (b, a)):
            wins[(x, y)] += 0.25
    for v in votes:
        if v.choice == "both_bad":
            continue
        if v.winner is None:
            wins[(v.system_left, v.system_right)] += 0.5
            wins[(v.system_right, v.system_left)] += 0.5
        else:
            loser = v.system_right if v.winner == v.system_left else v.system_left
            wins[(v.winner, loser)] += 1
    p = {s: 1.0 for s in systems}
    for _ in range(iters):
        new = {}
        for i in systems:
            w = sum(wins[(i, j)] for j in systems if j != i)
            denom = sum((wins[(i, j)] + wins[(j, i)]) / (p[i] + p[j]) for j in systems if j != i)
            new[i] = w / denom if denom else p[i]
        norm = math.exp(sum(math.log(x) for x in new.values()) / len(new))
        new = {s: x / norm for s, x in new.items()}
        done = max(abs(new[s] - p[s]) for s in systems) < tol
        p = new
        if done:
            break
    return {s: math.log(p[s]) for s in systems}


def percentile_interval(xs: list[float]) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap samples, widened to whole samples: the 2.5th
    percentile rounded down and the 97.5th rounded up (numpy's "lower" and "higher")."""
    xs = sorted(xs)
    return xs[int(0.025 * (len(xs) - 1))], xs[int(math.ceil(0.975 * (len(xs) - 1)))]


def bradley_terry_ci(votes: list[Vote], rounds: int = 200, seed: int = 0) -> list[dict]:
    """Bradley-Terry scores with 95% percentile bootstrap intervals (votes resampled)."""
    point = bradley_terry(votes)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds if votes else 0):
        boot = bradley_terry([rng.choice(votes) for _ in votes], iters=100)
        for s in point:
            samples[s].append(boot.get(s, 0.0))
    rows = []
    for s, score in sorted(point.items(), key=lambda kv: -kv[1]):
        lo, hi = percentile_interval(samples[s] or [score])
        rows.append({"system": s, "bt_score": score, "ci_low": lo, "ci_high": hi})
    return rows


def ordered(values) -> list:
    """The distinct values in their natural order: numbers by size (as text, 10 would sort
    before 2 and an ordinal scale would be scrambled), anything else by its text."""
    distinct = set(values)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct):
        return sorted(distinct)
    return sorted(distinct, key=str)


def cohen_kappa(a: list, b: list) -> float:
    """Cohen's kappa for two raters over the same units; NaN when undefined (no units, or
    both raters used one and the same category, so chance agreement is already total)."""
    n = len(a)
    if n == 0:
        return float("nan")
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return (po - pe) / (1 - pe) if pe < 1 else float("nan")


def fleiss_kappa(units: list[list]) -> float:
    """Fleiss' kappa; every unit must have the same number (>= 2) of ratings. NaN when
    undefined: no units, unequal sizes, or a single category used throughout."""
    units = [u for u in units if len(u) >= 2]
    if not units or len({len(u) for u in units}) != 1:
        return float("nan")
    n = len(units[0])
    cats = ordered(x for u in units for x in u)
    counts = [Counter(u) for u in units]
    p_i = [(sum(c[k] ** 2 for k in cats) - n) / (n * (n - 1)) for c in counts]
    p_bar = sum(p_i) / len(units)
    p_j = [sum(c[k] for c in counts) / (len(units) * n) for k in cats]
    pe = sum(p * p for p in p_j)
    return (p_bar - pe) / (1 - pe) if pe < 1 else float("nan")


def krippendorff_alpha(units: list[list], level: str = "ordinal") -> float:
    """Krippendorff's alpha (nominal, interval or ordinal distance); units may have any number
    of ratings, and units with fewer than two are ignored. NaN when undefined (fewer than two
    distinct values: no disagreement is expected, so none can be measured)."""
    if level not in ("nominal", "interval", "ordinal"):
        raise ValueError(f"unknown measurement level {level!r}")
    units = [u for u in units if len(u) >= 2]
    values = ordered(x for u in units for x in u)
    if not units or len(values) < 2:
        return float("nan")
    freq = Counter(x for u in units for x in u)
    rank = {v: i for i, v in enumerate(values)}

    def delta(c, k):
        if c == k:
            return 0.0
        if level == "nominal":
            return 1.0
        if level == "interval":
            return float(c - k) ** 2
        lo, hi = sorted((rank[c], rank[k]))  # ordinal: Krippendorff (2011), eq. for ordinal
        between = sum(freq[values[g]] for g in range(lo, hi + 1))
        return (between - (freq[values[lo]] + freq[values[hi]]) / 2) ** 2

    n_total = sum(len(u) for u in units)
    d_o = 0.0
    for u in units:
        m = len(u)
        d_o += sum(delta(u[i], u[j]) for i in range(m) for j in range(m) if i != j) / (m - 1)
    d_o /= n_total
    d_e = sum(freq[c] * freq[k] * delta(c, k) for c in values for k in values)
    d_e /= n_total * (n_total - 1)
    return 1 - d_o / d_e


def _rating_units(votes: list[Vote], criterion: str) -> dict[tuple[str, str], dict[str, int]]:
    """(item, system) -> {annotator: rating} for one criterion."""
    units: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for v in votes:
        for side, system in (("left", v.system_left), ("right", v.system_right)):
            r = getattr(v, f"{side}_{criterion}")
            if r is not None:
                units[(v.item_id, system)][v.annotator] = r
    return units


def _choice_units(votes: list[Vote]) -> dict[tuple[str, str], dict[str, str]]:
    """item -> {annotator: winning system, or tie/both_bad}: comparable across side swaps."""
    units: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for v in votes:
        units[(v.item_id, "")][v.annotator] = v.winner or v.choice
    return units


MIN_AGREEMENT_UNITS = 3
"""Agreement resting on fewer units than this is undefined (one item rated twice says
nothing about how annotators agree in general)."""


def _agreement_row(criterion, statistic, unit, used, value=float("nan"), note="") -> dict:
    """One figure with what it rests on: the units and raters actually used, and, when it has
    no value, whether it does not apply (``n/a``, the note says why) or is undefined."""
    values = {x for u in used for x in u.values()}
    if note:
        status, value = "n/a", float("nan")
    elif len(used) < MIN_AGREEMENT_UNITS:
        status, value = "undefined", float("nan")
        note = (
            f"rests on {len(used)} {unit[:-1] if len(used) == 1 else unit}; at least "
            f"{MIN_AGREEMENT_UNITS} are needed"
        )
    elif len(values) < 2:
        status, value = "undefined", float("nan")
        only = next(iter(values), None)
        note = f"every rating is {only!r}: no variation, so agreement cannot be measured"
    else:
        status = "ok"
    return {
        "criterion": criterion,
        "statistic": statistic,
        "value": value,
        "status": status,
        "units": len(used),
        "unit": unit,
        "raters": len({a for u in used for a in u}),
        "note": note,
    }


def agreement(votes: list[Vote]) -> list[dict]:
    """Inter-annotator agreement per criterion (units: stories) and on the A/B choice (units:
    items). One row per statistic, each saying how many units and raters it rests on."""
    rows = []
    groups = {c: (_rating_units(votes, c), "ordinal", "stories") for c in CRITERIA}
    groups["choice"] = (_choice_units(votes), "nominal", "items")
    for name, (units, level, unit) in groups.items():
        multi = [u for u in units.values() if len(u) >= 2]
        one = {"stories": "story", "items": "item"}[unit]
        none_yet = "" if multi else f"no {one} rated by two annotators yet"
        alpha = krippendorff_alpha([list(u.values()) for u in multi], level)
        rows.append(
            _agreement_row(name, f"Krippendorff's alpha ({level})", unit, multi, alpha, none_yet)
        )
        annotators = sorted({a for u in multi for a in u})
        if len(annotators) == 2:
            a, b = annotators
            both = [u for u in multi if a in u and b in u]
            kappa = cohen_kappa([u[a] for u in both], [u[b] for u in both])
            rows.append(_agreement_row(name, "Cohen's kappa", unit, both, kappa))
        else:
            why = none_yet or f"needs exactly two annotators (there are {len(annotators)})"
            rows.append(_agreement_row(name, "Cohen's kappa", unit, [], note=why))
        if len(annotators) > 2:
            # Fleiss needs the same number of ratings per unit: the most common number is used,
            # and the row counts only those units.
            modal = Counter(len(u) for u in multi).most_common(1)[0][0]
            same = [u for u in multi if len(u) == modal]
            kappa = fleiss_kappa([list(u.values()) for u in same])
            label = f"Fleiss' kappa ({modal} ratings per unit)"
            rows.append(_agreement_row(name, label, unit, same, kappa))
        else:
            why = none_yet or "needs three or more annotators"
            rows.append(_agreement_row(name, "Fleiss' kappa", unit, [], note=why))
    return rows


def position_bias(votes: list[Vote]) -> dict:
    """How often the left story wins among decisive votes; 0.5 means no bias."""
    left = sum(v.choice == "left" for v in votes)
    decisive = left + sum(v.choice == "right" for v in votes)
    lo, hi = wilson(left, decisive)
    # Two-sided exact binomial test against 0.5.
    p_value = float("nan")
    if decisive:
        k = min(left, decisive - left)
        tail = sum(math.comb(decisive, i) for i in range(k + 1)) / 2**decisive
        p_value = min(1.0, 2 * tail)
    return {
        "decisive_votes": decisive,
        "left_wins": left,
        "left_win_rate": left / decisive if decisive else float("nan"),
        "ci_low": lo,
        "ci_high": hi,
        "p_value": p_value,
    }


def summary(votes: list[Vote], bootstrap_rounds: int = 200) -> dict:
    """Everything the Results view shows."""
    return {
        "votes": len(votes),
        "annotators": len({v.annotator for v in votes}),
        "items": len({v.item_id for v in votes}),
        "win_rates": win_rates(votes),
        "bradley_terry": bradley_terry_ci(votes, bootstrap_rounds),
        "agreement": agreement(votes),
        "position_bias": position_bias(votes),
    }
