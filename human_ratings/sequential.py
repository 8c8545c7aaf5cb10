"""When the answer is in: anytime-valid decisions for each pair of systems.

A study's owner looks at the results after every vote. A fixed-sample test (a binomial test, a
Wilson interval) looked at that often calls "A is better" between two equal systems far more
often than its nominal 5%. Here each pair's decisive votes (ties and "both bad" left out) are
Bernoulli trials with ``p`` the chance that the first system wins, and the decision rests on a
**confidence sequence**: a sequence of intervals that holds ``p`` at every number of votes at
once, with probability at least 95%. So the results can be looked at after every vote, and a
study stopped as soon as a pair is decided, without inflating false calls.

The sequence is the beta-binomial mixture of Robbins (1970), in the form of Howard, Ramdas,
McAuliffe and Sekhon (2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Annals of Statistics 49(2)): for each candidate ``p0`` the mixture likelihood ratio

    M_n(p0) = B(a + s, b + n - s) / B(a, b) / (p0^s (1 - p0)^(n - s))

(``s`` wins of ``n``, a Beta(a, b) mixing prior; here a = b = 1) is a nonnegative martingale
under ``p = p0``, so by Ville's inequality it ever reaches 1/alpha with probability at most
alpha. The sequence is ``{p0 : M_n(p0) < 1/alpha}``, an interval. ``bench/sequential.py``
simulates studies of two equal systems checked after every vote.

A pair is decided when its interval excludes 0.5 (one system is better) or lies within
``0.5 ± margin`` (they are equivalent within the margin); otherwise it is undecided, with an
estimate of the decisive votes still needed if the observed win rate held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.optimize import brentq
from scipy.special import betaln

ALPHA = 0.05
PRIOR = (1.0, 1.0)
MARGIN = 0.1
"""Two systems whose win rate is surely within 0.5 ± this are called equivalent."""
MAX_NEEDED = 100_000


def log_mixture(s: int, n: int, p0: float, prior=PRIOR) -> float:
    """log M_n(p0): the log of the mixture likelihood ratio against ``p = p0``."""
    a, b = prior
    if p0 <= 0.0:
        return math.inf if s > 0 else betaln(a, b + n) - betaln(a, b)
    if p0 >= 1.0:
        return math.inf if s < n else betaln(a + n, b) - betaln(a, b)
    return betaln(a + s, b + n - s) - betaln(a, b) - (s * math.log(p0) + (n - s) * math.log1p(-p0))


def confidence_sequence(s: int, n: int, alpha: float = ALPHA, prior=PRIOR) -> tuple[float, float]:
    """The interval of ``p`` at ``s`` wins of ``n`` decisive votes, valid at every ``n`` at once."""
    if n == 0:
        return 0.0, 1.0
    level = math.log(1 / alpha)
    centre = (s + prior[0]) / (n + prior[0] + prior[1])  # inside: M_n is smallest near here

    def f(p):
        return log_mixture(s, n, p, prior) - level

    if f(centre) >= 0:  # (cannot happen for these priors, but then nothing is excluded)
        return 0.0, 1.0
    lo = 0.0 if f(0.0) < 0 else brentq(f, 0.0, centre, xtol=1e-10)
    hi = 1.0 if f(1.0) < 0 else brentq(f, centre, 1.0, xtol=1e-10)
    return lo, hi


@dataclass
class Decision:
    """Where one pair of systems stands."""

    a: str
    b: str
    wins_a: int
    wins_b: int
    ties: int
    win_rate: float
    """``a``'s share of the decisive votes (NaN before the first)."""
    ci: tuple[float, float]
    """The anytime-valid 95% interval of ``a``'s win rate."""
    decision: str
    """``a better``, ``b better``, ``equivalent`` (within the margin) or ``undecided``."""
    votes_needed: int | None
    """Decisive votes still needed if the win rate stayed as observed (None when decided;
    :data:`MAX_NEEDED` when it would take more)."""

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "wins_a": self.wins_a,
            "wins_b": self.wins_b,
            "ties": self.ties,
            "win_rate": self.win_rate,
            "ci95": list(self.ci),
            "decision": self.decision,
            "votes_needed": self.votes_needed,
        }


def decide(s: int, n: int, margin: float = MARGIN, alpha: float = ALPHA) -> str:
    lo, hi = confidence_sequence(s, n, alpha)
    if lo > 0.5:
        return "a better"
    if hi < 0.5:
        return "b better"
    if 0.5 - margin <= lo and hi <= 0.5 + margin:
        return "equivalent"
    return "undecided"


def votes_needed(s: int, n: int, margin: float = MARGIN, alpha: float = ALPHA) -> int | None:
    """How many more decisive votes would decide the pair if its win rate held (None when it
    is decided already; :data:`MAX_NEEDED` when not within that many)."""
    if decide(s, n, margin, alpha) != "undecided":
        return None
    rate = (s + 1) / (n + 2)  # shrunk a little towards 0.5: no certainty from a handful

    def decided(total: int) -> bool:
        return decide(round(rate * total), total, margin, alpha) != "undecided"

    hi = max(n + 1, 8)
    while not decided(hi):
        if hi >= MAX_NEEDED:
            return MAX_NEEDED
        hi = min(2 * hi, MAX_NEEDED)
    lo = n  # decided(lo) is false
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if decided(mid):
            hi = mid
        else:
            lo = mid
    return hi - n


def pair_decision(
    a: str, b: str, wins_a: int, wins_b: int, ties: int = 0, margin=MARGIN
) -> Decision:
    n = wins_a + wins_b
    return Decision(
        a,
        b,
        wins_a,
        wins_b,
        ties,
        wins_a / n if n else float("nan"),
        confidence_sequence(wins_a, n),
        decide(wins_a, n, margin),
        votes_needed(wins_a, n, margin),
    )


def decisions(votes, margin: float = MARGIN) -> list[Decision]:
    """Every pair of systems that met in ``votes``, in name order."""
    tally: dict[tuple[str, str], list[int]] = {}
    for v in votes:
        a, b = sorted((v.system_left, v.system_right))
        t = tally.setdefault((a, b), [0, 0, 0])
        winner = v.winner
        if winner == a:
            t[0] += 1
        elif winner == b:
            t[1] += 1
        else:
            t[2] += 1
    return [pair_decision(a, b, *t, margin=margin) for (a, b), t in sorted(tally.items())]
