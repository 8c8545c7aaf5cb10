"""``python -m finetune VERB``: data -> adapter, offline. One module per verb in
``finetune/cli/``."""

from __future__ import annotations

import argparse

from finetune.cli import export_gguf, judges, prefer, preprocess, tagger_accuracy, train, tune
from storygen.config import HelpFormatter

VERBS = {
    "preprocess": preprocess,
    "train": train,
    "export-gguf": export_gguf,
    "tagger-accuracy": tagger_accuracy,
    "prefer": prefer,
    "tune": tune,
    "judges": judges,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune", description=__doc__, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, verb in VERBS.items():
        verb.add_arguments(sub.add_parser(name, formatter_class=HelpFormatter, help=verb.HELP))
    args = parser.parse_args(argv)
    return VERBS[args.command].run(args)


if __name__ == "__main__":
    raise SystemExit(main())
