"""``python -m eval {compare,score,readers}``: offline story evaluation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from eval.compare import EvalError
from storygen.config import HelpFormatter


def _read_pairs(path: Path) -> tuple[list[str], list[str]]:
    hyps, refs = [], []
    n = 0
    try:
        with path.open() as f:
            for n, line in enumerate(f, 1):  # noqa: B007 - n names the bad line below
                if line.strip():
                    row = json.loads(line)
                    hyps.append(str(row["hypothesis"]))
                    refs.append(str(row["reference"]))
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:
        raise EvalError(f'{path}:{n}: expected {{"hypothesis": ..., "reference": ...}}') from exc
    if not hyps:
        raise EvalError(f"{path} holds no pair")
    return hyps, refs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "compare",
        formatter_class=HelpFormatter,
        help="compare systems on one test set (see eval/compare.yaml)",
    )
    c.add_argument("config", type=Path)
    c.add_argument("--out", type=Path, default=Path("runs/compare"))
    s = sub.add_parser(
        "score",
        formatter_class=HelpFormatter,
        help="BLEU, ROUGE and diversity of a JSONL of {hypothesis, reference} pairs",
    )
    s.add_argument("pairs", type=Path)
    s.add_argument("--workers", type=int, default=2, help="processes for BLEU and ROUGE")
    r = sub.add_parser(
        "readers",
        formatter_class=HelpFormatter,
        help="adherence as readers see it: blind batches of a comparison's stories, then "
        "their labels scored per system (eval/readers.py)",
    )
    r.add_argument(
        "step",
        choices=["batch", "score", "pairs"],
        help="batch: blind batches for labellers; score: their labels per system; pairs: an "
        "A/B pairs file of two systems' stories for a study (human_ratings study new --items)",
    )
    r.add_argument(
        "folder", type=Path, help="batch, pairs: the comparison's --out; score: the batches'"
    )
    r.add_argument("--systems", nargs="+", default=[], help="batch, pairs: the systems to compare")
    r.add_argument(
        "--out", type=Path, default=Path("runs/readers"), help="batch: where to; pairs: the file"
    )
    r.add_argument("--per-batch", type=int, default=30, help="batch: stories per reader's batch")
    args = parser.parse_args(argv)
    try:
        if args.command == "compare":
            from eval.compare import markdown_table, run

            results = run(args.config, args.out)
            print(markdown_table(results))
            print(f"written to {args.out}/results.json, results.md and metrics.png")
        elif args.command == "readers":
            from eval import readers

            if args.step == "batch":
                made = readers.make_batches(args.folder, args.systems, args.out, args.per_batch)
                print(json.dumps(made) + f"\nwritten to {args.out}/batch_*.md and key.jsonl")
            elif args.step == "pairs":
                if args.out.suffix != ".jsonl":
                    raise EvalError("pairs: --out names the items file to write (a .jsonl)")
                args.out.parent.mkdir(parents=True, exist_ok=True)
                made = readers.make_pairs(args.folder, args.systems, args.out)
                print(f"{made} A/B items written to {args.out}")
            else:
                print(json.dumps(readers.score(args.folder), indent=2))
        else:
            from eval.diversity import diversity
            from eval.overlap import bleu, rouge

            hyps, refs = _read_pairs(args.pairs)
            scores = {"bleu": bleu(hyps, refs, args.workers), **rouge(hyps, refs, args.workers)}
            print(json.dumps({**scores, **diversity(hyps)}, indent=2))
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
