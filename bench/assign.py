"""Assignment time with many items and annotators: fewest-votes-first with counterbalanced
sides (:class:`human_ratings.assign.Assigner`) against the plain way (scan every item for the
fewest votes among those the annotator has not seen).

    python -m bench.assign [--items 10000] [--annotators 200] [--k 3]

Annotators take turns at random until every item has k votes; printed: the median and 99th
percentile milliseconds per assignment of each, and the ratio.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bench.common import table


def plain(items: list[str], k: int, annotators: list[str], seed: int) -> list[float]:
    rng = random.Random(seed)
    votes = dict.fromkeys(items, 0)
    seen = {a: set() for a in annotators}
    times = []
    while True:
        who = rng.choice(annotators)
        t0 = time.perf_counter()
        free = [i for i in items if i not in seen[who] and votes[i] < k]
        if not free:
            break
        low = min(votes[i] for i in free)
        item = rng.choice([i for i in free if votes[i] == low])
        times.append(time.perf_counter() - t0)
        votes[item] += 1
        seen[who].add(item)
        if len(times) >= 2000:
            break
    return times


def ours(items: list[str], k: int, annotators: list[str], seed: int) -> list[float]:
    from human_ratings.assign import Assigner

    rng = random.Random(seed)
    assigner = Assigner({i: ("a", "b") for i in items}, k, seed=seed)
    times = []
    while True:
        who = rng.choice(annotators)
        t0 = time.perf_counter()
        a = assigner.next(who)
        times.append(time.perf_counter() - t0)
        if a is None:
            break
        assigner.voted(who, a.item_id)
    return times


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--items", type=int, default=10_000)
    p.add_argument("--annotators", type=int, default=200)
    p.add_argument("--k", type=int, default=3)
    args = p.parse_args(argv)
    items = [f"i{n}" for n in range(args.items)]
    annotators = [f"a{n}" for n in range(args.annotators)]
    rows = []
    for name, fn in (("plain scan (first 2000)", plain), ("Assigner (until done)", ours)):
        times = sorted(fn(items, args.k, annotators, 0))
        rows.append(
            {
                "path": name,
                "assignments": len(times),
                "median_ms": round(1000 * statistics.median(times), 3),
                "p99_ms": round(1000 * times[int(0.99 * (len(times) - 1))], 3),
            }
        )
    print(f"{args.items} items, {args.annotators} annotators, k = {args.k}\n")
    print(table(rows, list(rows[0])))
    print(f"\nmedian ratio plain / ours: {rows[0]['median_ms'] / rows[1]['median_ms']:.0f}x")


if __name__ == "__main__":
    main()
