"""``python -m finetune train``: QLoRA fine-tuning on preprocessed data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from finetune.cli.common import given_flags
from finetune.config import TrainConfig
from storygen.config import QUANTIZATIONS, ConfigError, add_fields

HELP = "QLoRA fine-tuning on preprocessed data"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="YAML file; flags given here override it")
    add_fields(p, TrainConfig, {"quantization": QUANTIZATIONS})


def run(args: argparse.Namespace) -> int:
    from finetune.train import TrainDataError, train

    try:
        cfg = TrainConfig.load(args.config, given_flags(args, TrainConfig))
    except (ConfigError, ValueError, OSError) as exc:
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
