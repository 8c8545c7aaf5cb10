"""``python -m finetune tagger-accuracy``: the rule tagger on the hand-labelled sets."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

GOLD = Path(__file__).resolve().parent.parent / "gold"
"""The hand-labelled sets `tagger-accuracy` scores."""
HELP = "score the tagger on the hand-labelled set"


def add_arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("--gold", type=Path, default=GOLD / "tagger_gold.jsonl")
    a.add_argument(
        "--wp-gold",
        type=Path,
        default=GOLD / "tagger_gold_wp.jsonl",
        help="fields labelled by hand on real WritingPrompts rows, which the tagger's rules were "
        "read off (default: %(default)s)",
    )
    a.add_argument(
        "--wp-test-gold",
        type=Path,
        default=GOLD / "tagger_gold_wp_test.jsonl",
        help="fields labelled by hand on other real rows, held out from the tagger's rules "
        "(default: %(default)s)",
    )
    a.add_argument(
        "--arc-gold",
        type=Path,
        default=GOLD / "arc_gold_wp.jsonl",
        help="arcs labelled by hand on real WritingPrompts rows (default: %(default)s)",
    )
    a.add_argument(
        "--arc-data",
        type=Path,
        default=GOLD.parent.parent.parent / "shared/data/writingprompts/train_sample_500.csv",
        help="the WritingPrompts CSV the real rows come from (not in this repository); the "
        "real-story and arc scores are left out when it is missing (default: %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    from finetune.gold import accuracy, arc_accuracy, wp_field_accuracy

    report = accuracy(args.gold)
    if args.arc_data.exists():
        report["real_stories"] = wp_field_accuracy(args.wp_gold, args.arc_data)
        report["real_stories_held_out"] = wp_field_accuracy(args.wp_test_gold, args.arc_data)
        report["arc"] = arc_accuracy(args.arc_gold, args.arc_data)
    else:
        missing = f"left out: {args.arc_data} (the labelled stories) is missing"
        report["real_stories"] = report["real_stories_held_out"] = report["arc"] = missing
    print(json.dumps(report, indent=2))
    return 0
