"""``python -m human_ratings VERB``: studies, invitations, export, vote statistics and A/B
item building.

study new|status|close FOLDER   a study: its file, its progress and decisions, its end
invite FOLDER                   invite codes for a study's annotators (shown once)
export FOLDER                   a study's votes and reactions as Parquet with a dataset card
stats VOTES                     win rates, Bradley-Terry, agreement, position bias of a log
pairs / arena                   A/B items from requests and two systems
rate URL --code CODE            the Rate tab from a terminal: the item on screen, or a vote
"""

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
    st = sub.add_parser("study", formatter_class=HelpFormatter, help="new, status or close")
    st.add_argument("action", choices=["new", "status", "close"])
    st.add_argument("folder", type=Path, help="the study's folder")
    st.add_argument("--items", type=Path, help="new: the A/B items (a pairs file)")
    st.add_argument("--name", help="new: the study's name (default: the folder's)")
    st.add_argument("--k", type=int, default=3, help="new: votes wanted per item")
    st.add_argument("--access", default="invite", help="new: invite, oauth, open or local")
    st.add_argument(
        "--reveal",
        default="never",
        help="new: each (name the systems after each vote), end (once no item can come to the "
        "annotator again) or never (default: %(default)s)",
    )
    st.add_argument(
        "--gold",
        type=int,
        default=None,
        help="new: gold items to make (default: 10, or one per item when there are fewer)",
    )
    st.add_argument("--json", action="store_true", help="status: print JSON")
    i = sub.add_parser("invite", formatter_class=HelpFormatter, help="invite codes, shown once")
    i.add_argument("folder", type=Path, help="the study's folder")
    i.add_argument("--annotators", type=int, default=0, help="codes for this many new ids")
    i.add_argument("--names", nargs="*", default=[], help="codes for these annotator ids")
    i.add_argument("--owner", action="store_true", help="the codes open the Study tab too")
    i.add_argument("--revoke", nargs="*", default=[], help="revoke these annotators' codes")
    t = sub.add_parser(
        "rate",
        formatter_class=HelpFormatter,
        help="the Rate tab from a terminal: the item on screen, or a vote on it",
    )
    t.add_argument(
        "url", help="the running app (app.py --study FOLDER), e.g. http://127.0.0.1:7860"
    )
    t.add_argument("--code", required=True, help="your invite code")
    t.add_argument("--vote", choices=["A", "B", "tie", "bad"], help="your vote on the item shown")
    t.add_argument("--screen", help="the screen id printed under the item the vote answers")
    t.add_argument("--comment", default="", help="an optional comment")
    t.add_argument(
        "--ratings",
        type=lambda s: [int(x) if x.strip() else None for x in s.split(",")],
        default=None,
        help="optional 1-5 marks, comma-separated: A's coherence, engagement, relevance, "
        "personalization, then B's (leave one empty to skip it)",
    )
    e = sub.add_parser("export", formatter_class=HelpFormatter, help="Parquet + dataset card")
    e.add_argument("folder", type=Path, help="the study's folder")
    e.add_argument("--out", type=Path, default=None, help="default: FOLDER/export")
    e.add_argument("--real-ids", action="store_true", help="keep annotator ids as they are")
    args = parser.parse_args(argv)

    if args.command == "rate":
        from human_ratings.terminal import TerminalError, rate

        try:
            print(rate(args.url, args.code, args.vote, args.screen, args.comment, args.ratings))
        except TerminalError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command in ("study", "invite", "export"):
        return _study_command(args)
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


def _study_command(args) -> int:
    from human_ratings.identity import IdentityError
    from human_ratings.study import Study, StudyError, new_study

    try:
        if args.command == "study" and args.action == "new":
            if args.items is None:
                raise StudyError("study new needs --items (a pairs file)")
            study = new_study(
                args.folder, args.items, args.name, args.k, args.access, args.reveal, args.gold
            )
            print(
                f"study {study.name!r} in {args.folder}: {len(study.items)} items, "
                f"{len(study.gold_rows)} gold, k = {study.config.k}, access {study.config.access}"
                f"; edit {args.folder / 'study.yaml'} and guidelines.md, then invite annotators"
            )
            return 0
        study = Study(args.folder)
        if args.command == "invite":
            for name in args.revoke:
                study.invites.revoke(name)
                print(f"revoked: {name}")
            taken = set(study.invites.annotators())
            names = list(args.names)
            n = 1
            while len(names) < len(args.names) + args.annotators:
                if f"annotator-{n}" not in taken and f"annotator-{n}" not in names:
                    names.append(f"annotator-{n}")
                n += 1
            role = "owner" if args.owner else "annotator"
            for name, code in study.invites.create(names, role):
                print(f"{name}\t{code}")
            if names:
                print(
                    "(each code is shown this once; the study keeps only its hash)", file=sys.stderr
                )
            return 0
        if args.command == "export":
            from human_ratings.export import export

            out = args.out or args.folder / "export"
            counts = export(study, out, args.real_ids)
            print(f"{counts['votes']} votes and {counts['reactions']} reactions written to {out}")
            return 0
        status = study.close() if args.action == "close" else study.status()
        if args.json:
            print(json.dumps(_json_safe(status), indent=2, default=str))
        else:
            from human_ratings.report import study_markdown

            print(study_markdown(status))
        return 0
    except (StudyError, IdentityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


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
