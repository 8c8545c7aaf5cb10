"""Training throughput on the CPU: QLoRA (NF4 base) against plain LoRA (fp32 base).

    python -m bench.train_throughput [--steps 4] [--threads 2] [--max-length 512]

Same data (the first rows of a preprocessed train.jsonl, or the test fixtures), same LoRA
settings, batch 2 x max-length tokens, with and without gradient checkpointing. Reports
tokens/s (padded tokens processed per second, the usual trainer figure) and peak RSS.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import table
from eval.resources import PeakRSS
from finetune.config import TrainConfig
from finetune.train import train


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument(
        "--data",
        type=Path,
        default=Path("runs/data_wp500"),
        help="preprocessed folder (python -m finetune preprocess ...)",
    )
    args = parser.parse_args(argv)
    if not (args.data / "train.jsonl").exists():
        raise SystemExit(f"{args.data}/train.jsonl not found: run python -m finetune preprocess")
    rows = []
    # One discarded step first: the first configuration must not pay the process's warm-up.
    configs = (
        ("nf4", False, 1),
        ("nf4", False, args.steps),
        ("fp32", False, args.steps),
        ("nf4", True, args.steps),
        ("fp32", True, args.steps),
    )
    for i, (quant, gc, steps) in enumerate(configs):
        with tempfile.TemporaryDirectory() as out, PeakRSS() as mem:
            cfg = TrainConfig(
                data_dir=str(args.data),
                output_dir=out,
                quantization=quant,
                gradient_checkpointing=gc,
                max_steps=steps,
                batch_size=2,
                grad_accum=1,
                max_length=args.max_length,
                eval_steps=10_000,
                save_steps=10_000,
                max_eval_examples=1,
                threads=args.threads,
            )
            metrics = train(cfg, progress=False)
        if i == 0:
            continue
        rows.append(
            {
                "base": quant,
                "grad_ckpt": gc,
                "tokens_per_s": metrics["tokens_per_s"],
                "peak_rss_mib": mem.peak_mib,
            }
        )
    base = {(r["base"], r["grad_ckpt"]): r["tokens_per_s"] for r in rows}
    for gc in (False, True):
        rows.append(
            {
                "base": "ratio nf4/fp32",
                "grad_ckpt": gc,
                "tokens_per_s": base[("nf4", gc)] / base[("fp32", gc)],
            }
        )
    print(
        f"embedded SmolLM2-135M, LoRA r=8 on all projections, batch 2 x {args.max_length}, "
        f"{args.threads} threads, {args.steps} steps"
    )
    print(table(rows, ["base", "grad_ckpt", "tokens_per_s", "peak_rss_mib"]))


if __name__ == "__main__":
    main()
