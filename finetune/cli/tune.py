"""``python -m finetune tune``: preference tuning of an SFT adapter (DPO, KTO)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from finetune.cli.common import given_flags
from finetune.preference import METHODS, PreferenceConfig
from storygen.config import QUANTIZATIONS, ConfigError, add_fields

HELP = "preference tuning of an SFT adapter (TRL: DPO on pairs, KTO on thumbs)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML file; flags given here override it")
    add_fields(p, PreferenceConfig, {"quantization": QUANTIZATIONS, "method": METHODS})


def run(args: argparse.Namespace) -> int:
    from finetune.preference import PreferenceDataError, tune
    from storygen.loading import LoadError

    try:
        cfg = PreferenceConfig.load(args.config, given_flags(args, PreferenceConfig))
        print(json.dumps(tune(cfg), indent=2))
    except (ConfigError, ValueError, OSError, LoadError, PreferenceDataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
