"""Generation speed: our streaming path against plain ``model.generate`` on the same model.

    python -m bench.generation [--tokens 128] [--repeats 3] [--adapter none|demo]

On the embedded default with 1 thread, for NF4 and fp32: tokens/s, time to first token and peak
memory of each path, side by side, with the ratio ours/plain. Both paths sample the same number
of tokens with the same settings (EOS ignored), after one warm-up run each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers.generation.streamers import BaseStreamer

from bench.common import PeakRSS, pin_threads, table
from storygen.config import ModelSpec, SamplingConfig
from storygen.generation import build_prompt, stream_story
from storygen.loading import load_model
from storygen.request import Character, Setting, StoryRequest

REQUEST = StoryRequest(
    characters=[Character("Mara", ["stubborn", "kind"]), Character("Jonah", ["curious"])],
    setting=Setting("a lighthouse", "the 1920s"),
    genre="mystery",
    ending="happy",
    length="short",
)


class _FirstToken(BaseStreamer):
    """Records when generate() emits its first new token (its first put() is the prompt)."""

    def __init__(self):
        self.calls, self.first = 0, None

    def put(self, value):
        self.calls += 1
        if self.calls == 2 and self.first is None:
            self.first = time.perf_counter()

    def end(self):
        pass


def ours(lm, sampling: SamplingConfig) -> dict:
    t0 = time.perf_counter()
    first = None
    for update in stream_story(lm, REQUEST, sampling, stop_on_eos=False):
        if first is None and update.delta:
            first = time.perf_counter() - t0
        if update.story is not None:
            n = update.story.provenance["new_tokens"]
    seconds = time.perf_counter() - t0
    return {"tokens": n, "seconds": seconds, "ttft": first}


def plain(lm, sampling: SamplingConfig) -> dict:
    prompt, _ = build_prompt(lm, REQUEST)
    t0 = time.perf_counter()
    enc = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(lm.device)
    streamer = _FirstToken()
    torch.manual_seed(sampling.seed)
    with torch.inference_mode():
        out = lm.model.generate(
            **enc,
            do_sample=True,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            repetition_penalty=sampling.repetition_penalty,
            max_new_tokens=sampling.max_new_tokens,
            min_new_tokens=sampling.max_new_tokens,
            streamer=streamer,
            pad_token_id=lm.tokenizer.pad_token_id,
        )
    seconds = time.perf_counter() - t0
    return {
        "tokens": out.shape[1] - enc.input_ids.shape[1],
        "seconds": seconds,
        "ttft": streamer.first - t0,
    }


def measure(fn, lm, sampling, repeats: int) -> dict:
    fn(lm, SamplingConfig(**{**sampling.to_dict(), "max_new_tokens": 8}))  # warm-up
    runs = []
    with PeakRSS() as mem:
        for _ in range(repeats):
            runs.append(fn(lm, sampling))
    tps = [r["tokens"] / r["seconds"] for r in runs]
    return {
        "tokens_per_s": statistics.median(tps),
        "ttft_s": statistics.median(r["ttft"] for r in runs),
        "peak_rss_mib": mem.peak_mib,
        "tokens": runs[0]["tokens"],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--adapter", default="none")
    parser.add_argument("--quantizations", default="nf4,fp32")
    args = parser.parse_args(argv)
    pin_threads(1)
    sampling = SamplingConfig(max_new_tokens=args.tokens, seed=3)
    rows = []
    for q in args.quantizations.split(","):
        lm = load_model(ModelSpec(adapter=args.adapter, quantization=q))
        # Alternate the order so neither path always runs on a warmer machine.
        a = measure(ours, lm, sampling, args.repeats)
        b = measure(plain, lm, sampling, args.repeats)
        a2 = measure(ours, lm, sampling, 1)
        a["tokens_per_s"] = statistics.median([a["tokens_per_s"], a2["tokens_per_s"]])
        rows.append({"quant": q, "path": "storygen stream", **a})
        rows.append({"quant": q, "path": "plain generate", **b})
        rows.append(
            {
                "quant": q,
                "path": "ratio ours/plain",
                "tokens_per_s": a["tokens_per_s"] / b["tokens_per_s"],
                "ttft_s": a["ttft_s"] / b["ttft_s"],
                "peak_rss_mib": a["peak_rss_mib"] / b["peak_rss_mib"],
            }
        )
        del lm
    print(
        f"embedded SmolLM2-135M-Instruct, adapter={args.adapter}, 1 thread, "
        f"{args.tokens} new tokens, median of {args.repeats}"
    )
    print(table(rows, ["quant", "path", "tokens_per_s", "ttft_s", "peak_rss_mib", "tokens"]))


if __name__ == "__main__":
    main()
