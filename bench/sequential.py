"""False winners when the results are looked at after every vote: the anytime-valid decision
(:mod:`human_ratings.sequential`) against a fixed-sample 95% interval looked at just as often.

    python -m bench.sequential [--studies 1000] [--votes 500] [--seed 0]

Each study is two equal systems (every decisive vote a fair coin), checked after each vote up
to ``--votes``. Printed: the share of studies that ever declared a winner, with each method;
the nominal rate is 5%.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import table


def main(argv: list[str] | None = None) -> None:
    from human_ratings.sequential import decide
    from human_ratings.stats import wilson

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=1000)
    p.add_argument("--votes", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    flips = rng.random((args.studies, args.votes)) < 0.5
    wins = flips.cumsum(axis=1)
    t0 = time.perf_counter()
    # The decision only changes at some n; the interval is monotone in s for each n, so a
    # study crosses when s reaches the smallest s (or drops to the largest) that decides.
    cross_hi, cross_lo = {}, {}
    for n in range(1, args.votes + 1):
        hi = next((s for s in range(n // 2, n + 1) if decide(s, n) == "a better"), n + 1)
        lo = next((s for s in range(n // 2, -1, -1) if decide(s, n) == "b better"), -1)
        cross_hi[n], cross_lo[n] = hi, lo
    his = np.array([cross_hi[n] for n in range(1, args.votes + 1)])
    los = np.array([cross_lo[n] for n in range(1, args.votes + 1)])
    sequential = int(((wins >= his) | (wins <= los)).any(axis=1).sum())
    fixed_hit = np.zeros(args.studies, dtype=bool)
    for j, n in enumerate(range(1, args.votes + 1)):
        lo_hi = [wilson(int(s), int(n)) for s in range(n + 1)]
        excludes = np.array([lo > 0.5 or hi < 0.5 for lo, hi in lo_hi])
        fixed_hit |= excludes[wins[:, j]]
    fixed = int(fixed_hit.sum())
    rows = [
        {
            "method": "anytime-valid (beta-binomial confidence sequence)",
            "studies": args.studies,
            "votes_each": args.votes,
            "ever_declared_a_winner": round(sequential / args.studies, 4),
        },
        {
            "method": "fixed-sample Wilson 95% interval, looked at after every vote",
            "studies": args.studies,
            "votes_each": args.votes,
            "ever_declared_a_winner": round(fixed / args.studies, 4),
        },
    ]
    print(table(rows, list(rows[0])))
    print(f"\n(nominal 0.05; {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
