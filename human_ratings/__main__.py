"""``python -m human_ratings {stats,pairs,arena}``: vote statistics and A/B item building."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

from storygen.config import HelpFormatter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m human_ratings", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser(
        "stats",
        formatter_class=HelpFormatter,
        help="win rates, Bradley-Terry, agreement, position bias",
    )
    s.add_argument("votes", type=Path, help="the votes CSV written by the Rate tab")
    s.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    s.add_argument("--png", type=Path, help="also save the plots here")
    s.add_argument("--bootstrap", type=int, default=200)
    p = sub.add_parser(
        "pairs",
        formatter_class=HelpFormatter,
        help="generate A/B items from requests and two systems",
    )
    p.add_argument("requests", type=Path, help="JSONL, one story request per line")
    p.add_argument("systems", type=Path, help="YAML with 'systems:' holding two entries")
    p.add_argument("--out", type=Path, default=Path("runs/pairs.jsonl"))
    p.add_argument("--seed", type=int, default=7000)
    a = sub.add_parser(
        "arena",
        formatter_class=HelpFormatter,
        help="A/B items of a preference-tuned adapter against its parent, for the Rate tab",
    )
    a.add_argument("child", type=Path, help="an adapter folder written by `finetune tune`")
    a.add_argument("requests", type=Path, help="JSONL, one story request per line")
    a.add_argument("--base", default="embedded", help="the base model both adapters sit on")
    a.add_argument("--max-new-tokens", type=int, default=300)
    a.add_argument("--out", type=Path, default=Path("runs/arena"))
    a.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args(argv)

    if args.command == "stats":
        from human_ratings.report import markdown, save_figure
        from human_ratings.stats import summary
        from human_ratings.store import VoteStore

        if not args.votes.exists():
            print(f"error: {args.votes} does not exist", file=sys.stderr)
            return 2
        result = summary(VoteStore(args.votes).votes(), args.bootstrap)
        print(json.dumps(_json_safe(result), indent=2) if args.json else markdown(result))
        if args.png:
            save_figure(result, args.png)
        return 0
    from human_ratings.pairs import (
        PairsError,
        arena_systems,
        build_pairs,
        load_requests,
        load_systems,
    )
    from storygen.loading import LoadError

    try:
        if args.command == "arena":
            sampling = {"max_new_tokens": args.max_new_tokens}
            systems = arena_systems(args.child, args.base, sampling)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "systems.yaml").write_text(
                yaml.safe_dump(
                    {
                        "systems": [
                            {
                                "name": s.name,
                                "base": s.model.base,
                                "adapter": s.model.adapter,
                                "sampling": s.sampling,
                            }
                            for s in systems
                        ]
                    },
                    sort_keys=False,
                )
            )
            pairs = args.out / "pairs.jsonl"
            n = build_pairs(load_requests(args.requests), systems, pairs, args.seed)
            print(
                f"wrote {n} items of {systems[1].name} against {systems[0].name} to {pairs}; "
                f"rate them with: python app.py --pairs {pairs}"
            )
            return 0
        n = build_pairs(
            load_requests(args.requests), load_systems(args.systems), args.out, args.seed
        )
    except (PairsError, LoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {n} items to {args.out}")
    return 0


def _json_safe(value):
    """NaN (an undefined figure) as null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


if __name__ == "__main__":
    raise SystemExit(main())
