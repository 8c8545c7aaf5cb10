"""``python -m finetune preprocess``: WritingPrompts -> tagged train/valid/test JSONL."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HELP = "WritingPrompts -> tagged train/valid/test JSONL + report"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        help="CSV/JSONL/Parquet file, a .wp_source/.wp_target folder, or "
        "hub:euclaise/writingprompts",
    )
    p.add_argument("--out", type=Path, default=Path("runs/data"))
    p.add_argument(
        "--split",
        default="all",
        choices=["all", "train", "valid", "test"],
        help="which original split of a .wp_source/.wp_target folder to read (all: each one it "
        "has, written to its own file); other sources are one body of stories",
    )
    p.add_argument(
        "--valid-fraction",
        type=float,
        default=0.1,
        help="share of the train stories held out as valid.jsonl, when the source has no "
        "valid split of its own",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.0,
        help="share of the train stories held out as test.jsonl, when the source has no test "
        "split of its own",
    )
    p.add_argument("--word-budget", type=int, default=1000)
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="processes that clean and tag (default: one per core, %(default)s here); "
        "the output does not depend on it",
    )
    p.add_argument(
        "--hold-out",
        type=Path,
        default=None,
        help="a JSONL file of rows a model is measured on (finetune/gold/judges/stories.jsonl: "
        "its held-out prompts): their stories go to test.jsonl, never to train or valid",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="read at most this many pairs (of each original split)",
    )


def run(args: argparse.Namespace) -> int:
    from finetune.build import build, held_out_rows
    from finetune.data import DataError

    try:
        hold_out = held_out_rows(args.hold_out) if args.hold_out else frozenset()
        report = build(
            args.source,
            args.out,
            args.split,
            args.valid_fraction,
            args.word_budget,
            workers=args.workers,
            limit=args.limit,
            test_fraction=args.test_fraction,
            hold_out=hold_out,
        )
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2))
    return 0
