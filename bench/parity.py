"""Parity of the llama.cpp backend with the transformers reference, on the embedded model.

    python -m bench.parity [--base gemma3-270m] [--stories 20] [--prompts 10] [--tokens 32]

Both sides run the same weights: transformers in fp32 dequantized from the embedded GGUF (Q4_1
for SmolLM2, Q4_K_M for Gemma 3) with the peft demo adapter, llama.cpp on the GGUF itself with
the adapter's GGUF form. They still differ, because llama.cpp multiplies 4-bit weights by
8-bit-quantized activations. So this compares what matters and says how close:

- the mean per-token loss of real stories (the shared WritingPrompts sample, tagged prompts),
  with and without the adapter, and the adapter's effect (loss without minus loss with) on each;
- teacher-forced agreement: at how many story positions both pick the same most likely token;
- greedy continuations of example requests through each backend's own generation path: how many
  tokens agree before the first divergence.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

from bench.common import table
from eval.parity import MAX_TOKENS, ROOT, measure
from storygen.config import EMBEDDED

SHARED_SAMPLE = ROOT.parent / "shared" / "data" / "writingprompts" / "train_sample_500.csv"


def real_stories(n: int, path: Path = SHARED_SAMPLE) -> list[tuple[str, str]]:
    """(tagged prompt, story) for the last ``n`` rows of the sample (the demo's held-out end)."""
    from finetune.build import make_example
    from finetune.data import RawPair

    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    out = []
    for row in reversed(rows):
        raw = RawPair(row["prompt"], row["story"], str(row["row_id"]))
        example, _ = make_example(raw, word_budget=1000, field_dropout=0.15)
        if example is not None:
            out.append((example["prompt"], example["completion"]))
        if len(out) == n:
            break
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=EMBEDDED, help="an embedded model with a demo adapter")
    parser.add_argument("--stories", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    stories = real_stories(args.stories) if SHARED_SAMPLE.exists() else []
    r = measure(stories, args.prompts, args.tokens, base=args.base)
    rows = [{"adapter": k, **r[k]} for k in ("demo", "base") if k in r]
    if rows:
        print(f"Per-token loss of {r['stories']} real stories (first {MAX_TOKENS} tokens):\n")
        cols = ["adapter", "hf_loss", "llamacpp_loss", "loss_rel_diff", "max_story_rel_diff"]
        print(table(rows, [*cols, "top1_agreement"]))
        e = r["adapter_effect"]
        print(
            f"\nAdapter effect (loss without - with): transformers {e['hf_mean']:.4f}, llama.cpp "
            f"{e['llamacpp_mean']:.4f}, correlation over stories {e['effect_correlation']:.3f}"
        )
    else:
        print(f"(no real stories: {SHARED_SAMPLE} is absent)")
    g = r["greedy"]
    print(
        f"\nGreedy, {g['prompts']} requests x {g['tokens']} tokens: "
        f"identical for {g['all_agree']}; "
        f"tokens before the first divergence: {g['agreeing_prefix']}; how much transformers "
        f"preferred its own token there (nats): {[round(x, 3) for x in g['divergence_gaps']]}"
    )
    if args.json:
        args.json.write_text(json.dumps(r, indent=2, default=float) + "\n")
    assert all(math.isfinite(v) for k in ("demo", "base") if k in r for v in r[k].values())


if __name__ == "__main__":
    main()
