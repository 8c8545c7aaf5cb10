"""Command line: ``python -m storygen generate --genre fantasy --character "Mara: kind"``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from storygen.config import (
    MODEL_CHOICES,
    ConfigError,
    HelpFormatter,
    ModelSpec,
    SamplingConfig,
    add_fields,
    fields_from_args,
)
from storygen.prompt_format import parse_plan
from storygen.request import (
    ARCS,
    ENDINGS,
    GENRES,
    LENGTHS,
    POVS,
    TONES,
    Character,
    Plan,
    RequestError,
    Setting,
    StoryRequest,
    validate,
)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags that choose a model and its backend; shared with eval and the app."""
    add_fields(parser.add_argument_group("model"), ModelSpec, MODEL_CHOICES)


def model_spec(args: argparse.Namespace) -> ModelSpec:
    return fields_from_args(ModelSpec, args)


def add_sampling_args(parser: argparse.ArgumentParser) -> None:
    add_fields(parser.add_argument_group("sampling"), SamplingConfig)


def sampling_config(args: argparse.Namespace) -> SamplingConfig:
    return fields_from_args(SamplingConfig, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m storygen", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser(
        "generate", formatter_class=HelpFormatter, help="write a story that follows a request"
    )
    g.add_argument("--request", type=Path, help="a JSON file holding a whole request")
    g.add_argument("--character", action="append", default=[], metavar='"NAME: TRAIT, TRAIT"')
    g.add_argument("--place", default="", help="setting: where")
    g.add_argument("--era", default="", help="setting: when")
    g.add_argument("--genre", default="", help=", ".join(GENRES))
    g.add_argument("--tone", default="", help=", ".join(TONES))
    g.add_argument("--plot-point", action="append", default=[], help="an event that must happen")
    g.add_argument("--ending", default="", help=", ".join(ENDINGS))
    g.add_argument("--pov", default="", help=", ".join(POVS))
    g.add_argument(
        "--arc",
        default="",
        metavar="NAME",
        help="emotional arc: " + "; ".join(f"{k} ({v})" for k, v in ARCS.items()),
    )
    g.add_argument("--length", default=None, help=f"{', '.join(LENGTHS)} (default short)")
    g.add_argument("--prompt", default="", help="free text: anything else about the story")
    plan = g.add_mutually_exclusive_group()
    plan.add_argument(
        "--plan",
        action="store_true",
        help="plan first: the model writes a premise and five beats, then the story from them",
    )
    plan.add_argument(
        "--outline",
        type=Path,
        metavar="FILE",
        help="write the story from your own beats: a text file, one beat a line "
        "(an optional first line 'Premise: ...'; numbers or bullets are dropped)",
    )
    g.add_argument("--json", action="store_true", help="print one JSON object with provenance")
    g.add_argument(
        "--attempts",
        type=int,
        default=1,
        help="best-of-n: write this many stories (seeds SEED, SEED+1, ...) and keep the one the "
        "validated judges score best among those whose base-model perplexity is at most 5%% "
        "above the first's (1 to 8)",
    )
    add_model_args(g)
    add_sampling_args(g)
    return parser


def request_from_args(args: argparse.Namespace) -> StoryRequest:
    """The request from --request, with any field flags given on the command line on top."""
    if args.request:
        try:
            data = json.loads(args.request.read_text())
        except (OSError, ValueError) as exc:
            raise RequestError({"request": f"cannot read {args.request}: {exc}"}) from exc
        request = StoryRequest.from_dict(data)
    else:
        request = StoryRequest()
    flags = {
        "characters": [Character.parse(c) for c in args.character],
        "genre": args.genre,
        "tone": args.tone,
        "plot_points": args.plot_point,
        "ending": args.ending,
        "pov": args.pov,
        "arc": args.arc,
        "prompt": args.prompt,
    }
    for key, value in flags.items():
        if value:
            setattr(request, key, value)
    if args.length or not args.request:
        request.length = args.length or "short"
    if args.place or args.era:
        request.setting = Setting(
            args.place or request.setting.place, args.era or request.setting.era
        )
    return validate(request)


def outline_from_file(path: Path) -> Plan:
    """A person's plan from a text file (see ``--outline``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RequestError({"outline": f"cannot read {path}: {exc}"}) from exc
    return parse_plan(text, origin="person", escaped=False)


def cmd_generate(args: argparse.Namespace) -> int:
    from storygen.backends import BackendError, load_backend
    from storygen.best_of import stream_best
    from storygen.generation import stream_plan
    from storygen.loading import LoadError
    from storygen.prompt_format import render_plan

    try:
        request = request_from_args(args)
        plan = outline_from_file(args.outline) if args.outline else None
        sampling = sampling_config(args)
        spec = model_spec(args)
    except (RequestError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        backend = load_backend(spec)
    except (LoadError, BackendError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    story, streamed, planned = None, "", None
    try:
        if args.plan:
            for update in stream_plan(backend, request, sampling):
                if update.plan is not None:
                    plan, planned = update.plan, update
                elif not args.json:
                    print(update.delta, end="", flush=True)
            if not args.json:
                print(f"\n\n--- plan ---\n{render_plan(plan, person=True)}\n\n--- story ---\n")
        attempt_now = 0
        for attempt, update in stream_best(backend, request, sampling, args.attempts, plan=plan):
            if update.story is not None:
                story = update.story
            elif not args.json:
                if attempt != attempt_now:
                    attempt_now = attempt
                    print(f"\n\n--- attempt {attempt + 1} of {args.attempts} ---\n")
                print(update.delta, end="", flush=True)
                streamed = update.text
    except (RequestError, ValueError) as exc:  # a bad attempts count, a format's lack, no plan
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    except BackendError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 4
    if args.json:
        out = {"story": story.text, "provenance": story.provenance}
        if plan is not None:
            out["plan"] = plan.to_dict()
        if planned is not None:
            out["plan_provenance"] = planned.provenance
        print(json.dumps(out, indent=2))
    else:
        print()
        chosen = story.provenance.get("attempts")
        if chosen:
            print(
                f"\n--- kept attempt {chosen['chosen'] + 1} of {chosen['n']} (judges' adherence "
                f"{chosen['adherence']}; base perplexity {chosen['base_ppl']}) ---\n{story.text}"
            )
        elif story.text != streamed.strip():
            print("\n--- cleaned (request echo and unfinished sentence removed) ---\n" + story.text)
        p = story.provenance
        print(
            f"\n[{p['base_model']} + {p['adapter_name'] or 'no adapter'}, {p['backend']}, "
            f"{p['quantization']}, "
            f"seed {p['sampling']['seed']}, {p['new_tokens']} tokens in {p['seconds']} s, "
            f"stop: {p['stop_reason']}]",
            file=sys.stderr,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "generate":
        return cmd_generate(args)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
