"""``python -m finetune export-gguf``: an adapter's GGUF form, for the llama.cpp backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write an adapter's GGUF form for the llama.cpp backend"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter_dir", type=Path, help="a folder written by `finetune train`")
    p.add_argument("--out", type=Path, default=None, help="default: ADAPTER_DIR/adapter_model.gguf")


def run(args: argparse.Namespace) -> int:
    from finetune.export_gguf import ExportError, export_gguf
    from storygen.loading import LoadError

    try:
        print(export_gguf(args.adapter_dir, args.out))
    except (ExportError, LoadError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
