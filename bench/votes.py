"""Vote log throughput with concurrent writers: VoteStore against a plain csv append.

    python -m bench.votes [--writers 8] [--votes 200]

Each of ``--writers`` processes appends ``--votes`` votes (a 300-character comment each) at the
same time. The plain alternative opens the file in append mode and writes with csv.writer, with
no lock, no duplicate check and no checksum. Reports votes/s and how many rows came back intact.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from bench.common import table
from human_ratings.store import COLUMNS, Vote, VoteStore, _cells


def _vote(w: int, i: int) -> Vote:
    return Vote(
        annotator=f"w{w}",
        item_id=f"i{i}",
        system_left="base",
        system_right="tuned",
        choice="left",
        left_coherence=4,
        right_coherence=3,
        comment="c" * 300,
    )


def _ours(path: str, w: int, n: int) -> None:
    store = VoteStore(path)
    for i in range(n):
        store.append(_vote(w, i))


def _plain(path: str, w: int, n: int) -> None:
    for i in range(n):
        with open(path, "a", newline="") as f:
            csv.writer(f).writerow(_cells(_vote(w, i)))


def run(target, writers: int, votes: int, path: Path) -> float:
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=target, args=(str(path), w, votes)) for w in range(writers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - t0


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--votes", type=int, default=200)
    args = parser.parse_args(argv)
    total = args.writers * args.votes
    with tempfile.TemporaryDirectory() as d:
        ours_path, plain_path = Path(d) / "ours.csv", Path(d) / "plain.csv"
        t_ours = run(_ours, args.writers, args.votes, ours_path)
        t_plain = run(_plain, args.writers, args.votes, plain_path)
        intact_ours = len(VoteStore(ours_path).read_all())
        with plain_path.open(newline="") as f:
            intact_plain = sum(len(r) == len(COLUMNS) - 1 for r in csv.reader(f))
    rows = [
        {
            "store": "storygen VoteStore (flock, dedupe, CRC, fsync)",
            "seconds": t_ours,
            "votes_per_s": total / t_ours,
            "intact_rows": intact_ours,
        },
        {
            "store": "plain csv append (no lock)",
            "seconds": t_plain,
            "votes_per_s": total / t_plain,
            "intact_rows": intact_plain,
        },
        {"store": "ratio ours/plain", "votes_per_s": t_plain / t_ours},
    ]
    print(f"{args.writers} concurrent writer processes x {args.votes} votes = {total}")
    print(table(rows, ["store", "seconds", "votes_per_s", "intact_rows"]))


if __name__ == "__main__":
    main()
