"""``python -m finetune judges``: build, choose and measure the judges on the labelled set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "build the judges on the labelled stories, measure them on the held-out ones, report"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "writingprompts"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from finetune.judge_set import GOLD

    p.add_argument("--gold", type=Path, default=GOLD, help="the labelled set's folder")
    p.add_argument(
        "--data",
        type=Path,
        default=SHARED,
        help="the shared WritingPrompts folder the set's Reddit and GPT stories are read from "
        "(default: %(default)s)",
    )
    p.add_argument("--out", type=Path, default=Path("docs/judges"), help="the report's folder")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path("runs/judges"),
        help="where the sentence embeddings and the zero-shot language model's answers are "
        "kept (about 5 and 40 minutes to compute on 2 cores, then reused)",
    )
    p.add_argument(
        "--no-lm",
        action="store_true",
        help="leave the zero-shot language-model candidate out",
    )


def run(args: argparse.Namespace) -> int:
    from finetune.judge_set import JudgeSetError
    from finetune.judges import run as build
    from finetune.judges import write_outputs

    try:
        results, heads, summary = build(args.gold, args.data, args.out, args.cache, not args.no_lm)
    except (JudgeSetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_outputs(results, heads, summary, args.out)
    print(f"written: {args.out}/README.md, {args.out}/results.json and storygen/judges/heads.json")
    return 0
