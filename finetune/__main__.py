"""``python -m finetune {preprocess,train,export-gguf,tagger-accuracy,prefer,tune}``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from finetune.config import TrainConfig
from finetune.preference import METHODS, PreferenceConfig
from storygen.config import QUANTIZATIONS, UNSET, HelpFormatter, add_fields
from storygen.prompt_format import FORMAT_VERSIONS, PROMPT_FORMAT_VERSION

GOLD = Path(__file__).parent / "gold"
"""The hand-labelled sets `tagger-accuracy` scores."""


def _add_train_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file; flags given here override it")
    add_fields(parser, TrainConfig, {"quantization": QUANTIZATIONS})


def _flags(args: argparse.Namespace, cls: type) -> dict:
    """The settings of ``cls`` given as flags (those not given stay out)."""
    given = {f.name: getattr(args, f.name) for f in fields(cls)}
    return {name: value for name, value in given.items() if value is not UNSET}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "preprocess",
        formatter_class=HelpFormatter,
        help="WritingPrompts -> tagged train/valid/test JSONL + report",
    )
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
        "--limit",
        type=int,
        default=None,
        help="read at most this many pairs (of each original split)",
    )
    t = sub.add_parser(
        "train", formatter_class=HelpFormatter, help="QLoRA fine-tuning on preprocessed data"
    )
    _add_train_flags(t)
    x = sub.add_parser(
        "export-gguf",
        formatter_class=HelpFormatter,
        help="write an adapter's GGUF form for the llama.cpp backend",
    )
    x.add_argument("adapter_dir", type=Path, help="a folder written by `finetune train`")
    x.add_argument("--out", type=Path, default=None, help="default: ADAPTER_DIR/adapter_model.gguf")
    a = sub.add_parser(
        "tagger-accuracy",
        formatter_class=HelpFormatter,
        help="score the tagger on the hand-labelled set",
    )
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
        default=Path(__file__).resolve().parent.parent.parent
        / "shared/data/writingprompts/train_sample_500.csv",
        help="the WritingPrompts CSV the real rows come from (not in this repository); the "
        "real-story and arc scores are left out when it is missing (default: %(default)s)",
    )
    f = sub.add_parser(
        "prefer",
        formatter_class=HelpFormatter,
        help="preference data (DPO pairs, KTO examples) from votes, thumbs and edits",
    )
    f.add_argument("--votes", type=Path, default=None, help="the Rate tab's votes CSV")
    f.add_argument(
        "--items",
        type=Path,
        action="append",
        default=[],
        help="A/B items the votes refer to: a pairs file, live_items.jsonl (repeatable)",
    )
    f.add_argument("--reactions", type=Path, default=None, help="the Write tab's reactions JSONL")
    f.add_argument(
        "--criterion",
        default=None,
        choices=["coherence", "engagement", "relevance", "personalization"],
        help="decide each vote by this 1-5 rating instead of the overall choice",
    )
    f.add_argument(
        "--prompt-format",
        default=PROMPT_FORMAT_VERSION,
        choices=FORMAT_VERSIONS,
        help="render prompts as the adapter to be tuned reads them (its storygen_adapter.json)",
    )
    f.add_argument("--out", type=Path, default=Path("runs/prefer"))
    u = sub.add_parser(
        "tune",
        formatter_class=HelpFormatter,
        help="preference tuning of an SFT adapter (TRL: DPO on pairs, KTO on thumbs)",
    )
    u.add_argument("--config", type=Path, help="YAML file; flags given here override it")
    add_fields(u, PreferenceConfig, {"quantization": QUANTIZATIONS, "method": METHODS})
    args = parser.parse_args(argv)

    if args.command == "preprocess":
        from finetune.build import build
        from finetune.data import DataError

        try:
            report = build(
                args.source,
                args.out,
                args.split,
                args.valid_fraction,
                args.word_budget,
                workers=args.workers,
                limit=args.limit,
                test_fraction=args.test_fraction,
            )
        except DataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    if args.command == "train":
        from finetune.train import TrainDataError, train

        overrides = _flags(args, TrainConfig)
        try:
            cfg = TrainConfig.load(args.config, overrides)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            metrics = train(cfg)
        except TrainDataError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if metrics:  # under accelerate launch, only the main process reports
            print(json.dumps(metrics, indent=2))
        return 0
    if args.command == "export-gguf":
        from finetune.export_gguf import ExportError, export_gguf
        from storygen.loading import LoadError

        try:
            print(export_gguf(args.adapter_dir, args.out))
        except (ExportError, LoadError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "prefer":
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
    if args.command == "tune":
        from finetune.preference import PreferenceDataError, tune
        from storygen.loading import LoadError

        overrides = _flags(args, PreferenceConfig)
        try:
            cfg = PreferenceConfig.load(args.config, overrides)
            print(json.dumps(tune(cfg), indent=2))
        except (ValueError, OSError, LoadError, PreferenceDataError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "tagger-accuracy":
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
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
