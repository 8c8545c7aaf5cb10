"""``python -m finetune export-gguf``: an adapter's GGUF form, for the llama.cpp backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "write an adapter's GGUF form for the llama.cpp backend"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("adapter_dir", type=Path, help="a folder written by `finetune train`")
    p.add_argument("--out", type=Path, default=None, help="default: ADAPTER_DIR/adapter_model.gguf")
    p.add_argument(
        "--merge",
        metavar="TYPE",
        help="instead, merge the adapter into its base and quantize the result to TYPE "
        "(Q4_0, Q4_1, Q4_K_M, Q8_0, F16): ADAPTER_DIR/merged-<type>.gguf",
    )
    p.add_argument("--base-gguf", type=Path, help="--merge: the base's GGUF (default: embedded)")
    p.add_argument(
        "--max-loss-increase",
        type=float,
        default=0.01,
        help="--merge: refuse a merged model whose loss on the shipped A/B stories is this much "
        "worse than the adapter on its base (default: %(default)s, 1%%)",
    )


def run(args: argparse.Namespace) -> int:
    from finetune.export_gguf import ExportError, export_gguf, merge_gguf
    from storygen.loading import LoadError

    try:
        if args.merge:
            merged = merge_gguf(
                args.adapter_dir, args.merge, args.out, args.base_gguf, args.max_loss_increase
            )
            print(merged)
        else:
            print(export_gguf(args.adapter_dir, args.out))
    except (ExportError, LoadError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
