"""``python -m finetune prefer``: preference data from votes, thumbs and edits."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from storygen.prompt_format import FORMAT_VERSIONS, PROMPT_FORMAT_VERSION

HELP = "preference data (DPO pairs, KTO examples) from votes, thumbs and edits"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--votes", type=Path, default=None, help="the Rate tab's votes CSV")
    p.add_argument(
        "--items",
        type=Path,
        action="append",
        default=[],
        help="A/B items the votes refer to: a pairs file, live_items.jsonl (repeatable)",
    )
    p.add_argument("--reactions", type=Path, default=None, help="the Write tab's reactions JSONL")
    p.add_argument(
        "--criterion",
        default=None,
        choices=["coherence", "engagement", "relevance", "personalization"],
        help="decide each vote by this 1-5 rating instead of the overall choice",
    )
    p.add_argument(
        "--prompt-format",
        default=PROMPT_FORMAT_VERSION,
        choices=FORMAT_VERSIONS,
        help="render prompts as the adapter to be tuned reads them (its storygen_adapter.json)",
    )
    p.add_argument("--out", type=Path, default=Path("runs/prefer"))


def run(args: argparse.Namespace) -> int:
    from finetune.prefer import PreferError, build_preferences

    try:
        report = build_preferences(
            args.out, args.votes, args.items, args.reactions, args.criterion, args.prompt_format
        )
    except (PreferError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2))
    return 0
