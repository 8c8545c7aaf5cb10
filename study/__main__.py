"""``python -m study VERB``: the whole study, raw WritingPrompts to report, in one command; the
feedback loop; reference items.

run CONFIG        preprocess -> train (+ GGUF) -> compare, each stage reused when finished
verify MANIFEST   rerun a finished study from nothing and say, per figure, if it matches
feedback CONFIG   one round of the feedback loop with a scripted annotator (a simulation);
                  --check-only reruns a finished round's child/parent check
reference SYSTEMS A/B items of a system against GPT-4's or GPT-3.5's stories (a fixed,
                  model-written reference for human studies)
requests          a test set of people-like held-out requests, for eval compare
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from storygen.config import HelpFormatter


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", formatter_class=HelpFormatter, help="run or resume a study")
    r.add_argument("config", type=Path, help="a study YAML (see study/embedded_wp500.yaml)")
    r.add_argument("--out", type=Path, default=None, help="default: runs/study/NAME")
    v = sub.add_parser("verify", formatter_class=HelpFormatter, help="rerun and compare")
    v.add_argument("manifest", type=Path, help="the manifest.json of a finished study")
    v.add_argument("--out", type=Path, default=None, help="default: beside it, verify-TIME")
    f = sub.add_parser(
        "feedback",
        formatter_class=HelpFormatter,
        help="one round of the feedback loop, simulated with a scripted annotator",
    )
    f.add_argument("config", type=Path, help="a feedback YAML (see study/feedback_demo.yaml)")
    f.add_argument("--out", type=Path, default=Path("runs/feedback"))
    f.add_argument(
        "--check-only",
        action="store_true",
        help="run the child/parent check again on the round already in --out",
    )
    rf = sub.add_parser(
        "reference",
        formatter_class=HelpFormatter,
        help="A/B items of a system against a strong model's stories (a fixed reference)",
    )
    rf.add_argument("systems", type=Path, help="YAML with 'systems:'; the first is compared")
    rf.add_argument("--shared", type=Path, required=True, help="the shared WritingPrompts folder")
    rf.add_argument("--writer", default="gpt4", choices=["gpt4", "gpt35"])
    rf.add_argument("--n", type=int, default=20)
    rf.add_argument("--out", type=Path, default=Path("runs/reference_pairs.jsonl"))
    hq = sub.add_parser(
        "requests",
        formatter_class=HelpFormatter,
        help="a test set of people-like held-out requests (the judge set's), for eval compare",
    )
    hq.add_argument("--shared", type=Path, required=True, help="the shared WritingPrompts folder")
    hq.add_argument("--n", type=int, default=60)
    hq.add_argument("--out", type=Path, default=Path("runs/bestof/test.jsonl"))
    args = parser.parse_args(argv)
    if args.command == "reference":
        return _reference(args)
    if args.command == "requests":
        from study.reference import heldout_requests

        print(f"wrote {heldout_requests(args.shared, args.out, args.n)} requests to {args.out}")
        return 0

    from eval.compare import EvalError
    from finetune.data import DataError
    from finetune.train import TrainDataError
    from study.config import StudyConfig, StudyError
    from study.stages import run_study, verify

    try:
        if args.command == "feedback":
            from storygen.config import ConfigError, load_config
            from study.feedback import FeedbackConfig, run_feedback

            try:
                cfg = load_config(FeedbackConfig, args.config)
            except ConfigError as exc:
                raise StudyError(str(exc)) from exc
            result = run_feedback(cfg, args.out, check_only=args.check_only)
            keys = (
                "votes",
                "adherence",
                "adherence_difference",
                "adherence_other_fields_difference",
                "token_ppl",
                "ppl_change",
            )
            print(json.dumps({k: result[k] for k in keys}, indent=2))
            return 0
        if args.command == "run":
            cfg = StudyConfig.load(args.config)
            out = args.out or Path("runs/study") / cfg.name
            manifest = run_study(cfg, out)
            print(f"{out}/study.md, manifest.json and compare/ written in {manifest['seconds']} s")
            return 0
        report = verify(args.manifest, args.out)
    except (StudyError, EvalError, DataError, TrainDataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for row in report["figures"]:
        rel = row["relative_difference"]
        print(
            f"{row['verdict']:8} {row['group']:>20} {row['figure']:<22} {row['value']!s:>12} "
            f"-> {row['rerun']!s:<12}"
            + (f" ({rel:.2e}, tolerance {row['tolerance']})" if rel else "")
        )
    differing = [f for f in report["files"] if f["verdict"] != "identical"]
    print(f"files: {len(report['files']) - len(differing)} identical, {len(differing)} not")
    print(json.dumps({"reproduced": report["reproduced"], "rerun": report["rerun"]}))
    return 0 if report["reproduced"] else 1


def _reference(args) -> int:
    from human_ratings.pairs import PairsError, item_row
    from storygen.config import ConfigError, SystemSpec, read_yaml
    from study.reference import reference_items

    try:
        data = read_yaml(args.systems)
        if not isinstance(data, dict) or not data.get("systems"):
            raise ConfigError(f"{args.systems}: expected 'systems:' with at least one entry")
        system = SystemSpec.from_dict(data["systems"][0], str(args.systems))
        items = reference_items(system, args.shared, args.writer, args.n)
    except (PairsError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.write_text("".join(json.dumps(item_row(it)) + "\n" for it in items))
    print(f"wrote {len(items)} items of {system.name} against {args.writer} to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
