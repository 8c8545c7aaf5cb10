"""The adapter merged into the base and re-quantized, against today's run-time LoRA on the
embedded Q4_1 file: speed and per-token loss, side by side in one run.

    python -m bench.merged [--types Q4_0,Q8_0,Q4_K_M,Q4_1] [--tokens 256] [--repeats 3]

Each variant is made with ``python -m finetune export-gguf ADAPTER --merge TYPE`` (llama.cpp's
llama-export-lora, then llama-quantize). Loss: the mean per-token loss of 20 real stories after
their tagged prompts (the shared WritingPrompts sample's held-out end, as ``bench.parity``),
for each variant and for the fp32 reference (transformers on the dequantized base with the
peft adapter); a variant is kept only within 1% of the run-time LoRA's loss. Speed: one reader,
in process, ``--tokens`` tokens decoded after the same prompt, the variants taking turns for
``--repeats`` rounds; tokens/s median and spread, and the ratio to the run-time LoRA.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import table
from bench.parity import SHARED_SAMPLE, real_stories
from eval.parity import HFScorer, LlamaScorer, story_losses
from storygen.config import DEMO_ADAPTER, ModelSpec, SamplingConfig, demo_adapter_dir

RUNTIME = "Q4_1 + run-time LoRA (today)"


def decode_speed(backend, prompt, tokens: int) -> float:
    from storygen.backends.base import DecodeStats

    sampling = SamplingConfig(temperature=0, repetition_penalty=1.0, seed=0)
    t0 = time.perf_counter()
    n = sum(1 for _ in backend.tokens(prompt, sampling, tokens, DecodeStats(), stop_on_eos=False))
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    from finetune.export_gguf import merge_gguf
    from storygen.backends.llamacpp import LlamaCppBackend
    from storygen.prompt_format import tagged_prompt
    from storygen.request import StoryRequest

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--types", default="Q4_0,Q8_0,Q4_K_M,Q4_1")
    parser.add_argument("--stories", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    adapter = demo_adapter_dir()
    with tempfile.TemporaryDirectory() as d:
        files = {  # every type, however far its loss moved: measuring that is the point
            t: merge_gguf(adapter, t, Path(d) / f"merged-{t}.gguf", max_loss_increase=math.inf)
            for t in args.types.split(",")
        }
        specs = {RUNTIME: ModelSpec(adapter=DEMO_ADAPTER)}
        specs |= {f"merged {t}": ModelSpec(base=str(f), adapter=None) for t, f in files.items()}
        rows = {name: {"variant": name} for name in specs}
        if SHARED_SAMPLE.exists():
            stories = real_stories(args.stories)
            ref = float(np.mean([x for x, _ in story_losses(HFScorer(DEMO_ADAPTER), stories)]))
            for name, spec in specs.items():
                adapter_arg = DEMO_ADAPTER if name == RUNTIME else None
                scorer = LlamaScorer(adapter_arg, base=spec.base)
                rows[name]["loss"] = float(np.mean([x for x, _ in story_losses(scorer, stories)]))
                scorer.close()
            today = rows[RUNTIME]["loss"]
            for row in rows.values():
                row["vs_fp32_reference"] = f"{row['loss'] / ref - 1:+.2%}"
                row["vs_today"] = f"{row['loss'] / today - 1:+.2%}"
                row["within_1%"] = row["loss"] <= today * 1.01
        else:
            print(f"(no real stories: {SHARED_SAMPLE} is absent; speed only)")
            ref = None
        prompt = tagged_prompt(StoryRequest(genre="mystery", length="short"))
        backends = {name: LlamaCppBackend(spec) for name, spec in specs.items()}
        speeds: dict[str, list[float]] = {name: [] for name in specs}
        for b in backends.values():
            decode_speed(b, prompt, 16)  # warm-up
        for _ in range(args.repeats):
            for name, b in backends.items():
                speeds[name].append(decode_speed(b, prompt, args.tokens))
        for name, row in rows.items():
            s = speeds[name]
            row["tokens_per_s"] = f"{statistics.median(s):.1f} ({min(s):.1f}-{max(s):.1f})"
            ratios = [a / b for a, b in zip(s, speeds[RUNTIME])]
            row["speed_vs_today"] = (
                f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            )
            row["size_mb"] = round(Path(backends[name].model_path).stat().st_size / 1e6, 1)
    cols = ["variant", "tokens_per_s", "speed_vs_today", "size_mb"]
    if ref is not None:
        print(f"fp32 reference loss (transformers, dequantized base + peft adapter): {ref:.4f}\n")
        cols += ["loss", "vs_fp32_reference", "vs_today", "within_1%"]
    print(table(list(rows.values()), cols))
    print(
        f"\none reader, in process, {args.tokens} tokens after the same prompt, "
        f"{args.repeats} rounds"
    )


if __name__ == "__main__":
    main()
