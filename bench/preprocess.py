"""Preprocessing + tagging at WritingPrompts scale, streaming against load-everything.

    python -m bench.preprocess [--pairs 303000] [--workers 2] [--plain-pairs 30000]

Builds the input by repeating the 500-pair sample (each copy's prompt made unique so
de-duplication keeps it), then runs ``finetune.build.build`` (streaming, ``--workers``
processes) and, side by side, the plain alternative: pandas reads the whole CSV into memory and
the same per-row function runs in one process. Each measurement runs in a fresh process. Reports
wall time, pairs/s and peak memory of that process and its workers (sampled every 10 ms), and
the ratios.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

from bench.common import table

SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "data"
    / "writingprompts"
    / "train_sample_500.csv"
)


def read_sample(path: Path = SAMPLE) -> list[dict]:
    """The 500 real pairs (../shared, never committed); a clear error when they are absent."""
    if not path.exists():
        raise SystemExit(f"{path} not found: pass --sample with a WritingPrompts CSV")
    csv.field_size_limit(sys.maxsize)
    return list(csv.DictReader(path.open(newline="", encoding="utf-8")))


def make_input(n: int, out: Path, sample: Path = SAMPLE) -> Path:
    rows = read_sample(sample)
    with out.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["row_id", "prompt", "story", "completion"])
        for i in range(n):
            r = rows[i % len(rows)]
            w.writerow([i, r["prompt"].rstrip("\n") + f" (copy {i // len(rows)})", r["story"], ""])
    return out


class TreePeak:
    """Peak resident memory of this process and its children.

    Listing children scans /proc (~6 ms): done every 0.5 s, while the memory of the known
    processes is read every 10 ms. Scanning every 10 ms took ~40% of a core away from the
    workers being measured.
    """

    def __enter__(self):
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        children, listed = [], 0.0
        while not self._stop.is_set():
            if time.monotonic() - listed > 0.5:
                children, listed = self.proc.children(recursive=True), time.monotonic()
            rss = self.proc.memory_info().rss
            for c in children:
                try:
                    rss += c.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, rss)
            time.sleep(0.01)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def isolated(fn, *args) -> dict:
    """Run ``fn(*args)`` in a fresh process: memory one measurement leaves behind (pandas, a
    heap Python keeps after freeing) must not count in the next one's peak."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def ours(path: Path, workers: int) -> dict:
    from finetune.build import build

    with TreePeak() as mem, tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        report = build(path, Path(out), workers=workers, progress=False)
        seconds = time.perf_counter() - t0
    return {
        "pairs": report.read,
        "kept": report.kept,
        "seconds": seconds,
        "pairs_per_s": report.read / seconds,
        "peak_mib": mem.peak / 2**20,
    }


def plain(path: Path) -> dict:
    import pandas as pd

    from finetune.build import make_example
    from finetune.data import RawPair

    with TreePeak() as mem:
        t0 = time.perf_counter()
        df = pd.read_csv(path)
        out = [
            make_example(RawPair(p, s, str(i)), 1000, 0.15)
            for i, p, s in zip(df["row_id"], df["prompt"], df["story"])
        ]
        seconds = time.perf_counter() - t0
    return {
        "pairs": len(df),
        "kept": sum(e is not None for e, _ in out),
        "seconds": seconds,
        "pairs_per_s": len(df) / seconds,
        "peak_mib": mem.peak / 2**20,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=303_000)
    parser.add_argument(
        "--plain-pairs",
        type=int,
        default=30_000,
        help="size of the side-by-side comparison (both paths run on it)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("runs/bench"))
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    small = make_input(args.plain_pairs, args.dir / f"wp_{args.plain_pairs}.csv", args.sample)
    rows = [
        {
            "run": f"storygen streaming, {args.workers} workers",
            **isolated(ours, small, args.workers),
        },
        {"run": "plain: pandas load-all, 1 process", **isolated(plain, small)},
    ]
    rows.append(
        {
            "run": "ratio ours/plain",
            "seconds": rows[0]["seconds"] / rows[1]["seconds"],
            "pairs_per_s": rows[0]["pairs_per_s"] / rows[1]["pairs_per_s"],
            "peak_mib": rows[0]["peak_mib"] / rows[1]["peak_mib"],
        }
    )
    if args.pairs:
        full = make_input(args.pairs, args.dir / f"wp_{args.pairs}.csv", args.sample)
        rows.append(
            {
                "run": f"storygen streaming, {args.workers} workers, full scale",
                **isolated(ours, full, args.workers),
            }
        )
    print(f"preprocess + tag, {psutil.cpu_count()} cores")
    print(table(rows, ["run", "pairs", "kept", "seconds", "pairs_per_s", "peak_mib"]))


if __name__ == "__main__":
    main()
