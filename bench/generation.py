"""Generation speed of every path, side by side in one run, on 1 and 2 threads.

    python -m bench.generation [--tokens 128] [--repeats 3] [--threads 1,2] [--hf-repeats 1]

On the embedded model, the same request, the same sampling settings, the same number of new
tokens (EOS ignored), after a warm-up run of each path:

- plain llama-cpp-python on the same Q4_1 GGUF (its own C sampler, ``Llama.generate``), without
  and with the demo adapter's GGUF form;
- storygen's llamacpp backend (validation, prompt, shared sampler, repetition guard, incremental
  text), without and with the adapter;
- storygen's transformers backend, NF4 + adapter (the old default) and fp32 + adapter.

Prints tokens/s, time to first token and peak memory, and the ratios the targets are stated in:
ours/plain llama.cpp (target >= 0.9), the adapter's cost, and ours/NF4 + adapter (target >= 10).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import PeakRSS, table
from storygen.config import ModelSpec, SamplingConfig
from storygen.request import Character, Setting, StoryRequest

REQUEST = StoryRequest(
    characters=[Character("Mara", ["stubborn", "kind"]), Character("Jonah", ["curious"])],
    setting=Setting("a lighthouse", "the 1920s"),
    genre="mystery",
    ending="happy",
    length="short",
)


def ours(backend, sampling: SamplingConfig) -> dict:
    """storygen's streaming path on a loaded backend."""
    from storygen.generation import stream_story

    t0 = time.perf_counter()
    first = None
    for update in stream_story(backend, REQUEST, sampling, stop_on_eos=False):
        if first is None and update.delta:
            first = time.perf_counter() - t0
        if update.story is not None:
            n = update.story.provenance["new_tokens"]
    return {"tokens": n, "seconds": time.perf_counter() - t0, "ttft": first}


class PlainLlama:
    """llama-cpp-python used directly: tokenize, ``generate`` with its own sampler, detokenize."""

    def __init__(self, adapter: str | None, threads: int):
        from llama_cpp import Llama

        from storygen.backends.llamacpp import gguf_adapter, resolve_gguf_base
        from storygen.prompt_format import tagged_prompt

        spec = ModelSpec(adapter=adapter, backend="llamacpp")
        path, base_id = resolve_gguf_base(spec.base)
        lora, _ = gguf_adapter(spec, base_id)
        kwargs = {"lora_path": str(lora)} if lora else {}
        self.llm = Llama(
            model_path=str(path), n_ctx=4096, n_threads=threads, verbose=False, **kwargs
        )
        self.prompt = tagged_prompt(REQUEST).text

    def __call__(self, _, sampling: SamplingConfig) -> dict:
        t0 = time.perf_counter()
        ids = self.llm.tokenize(self.prompt.encode(), add_bos=False)
        self.llm.reset()
        self.llm.set_seed(sampling.seed)
        first, out = None, []
        for token in self.llm.generate(
            ids,
            temp=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            min_p=0.0,
            repeat_penalty=sampling.repetition_penalty,
            reset=True,
        ):
            out.append(token)
            self.llm.detokenize([token])
            if first is None:
                first = time.perf_counter() - t0
            if len(out) == sampling.max_new_tokens:
                break
        return {"tokens": len(out), "seconds": time.perf_counter() - t0, "ttft": first}


def measure(fn, target, sampling: SamplingConfig, repeats: int) -> dict:
    fn(target, SamplingConfig(**{**sampling.to_dict(), "max_new_tokens": 8}))  # warm-up
    runs = []
    with PeakRSS() as mem:
        for _ in range(repeats):
            runs.append(fn(target, sampling))
    return {
        "tokens_per_s": statistics.median(r["tokens"] / r["seconds"] for r in runs),
        "ttft_s": statistics.median(r["ttft"] for r in runs),
        "peak_rss_mib": mem.peak_mib,
        "tokens": runs[0]["tokens"],
    }


def run_threads(threads: int, sampling: SamplingConfig, repeats: int, hf_repeats: int) -> list:
    """Every path on ``threads`` threads; returns the table rows with the ratios."""
    import torch

    from storygen.backends import load_backend

    torch.set_num_threads(threads)
    rows: dict[str, dict] = {}
    for adapter in (None, "demo"):
        tag = "+ adapter" if adapter else "base"
        plain = PlainLlama(adapter, threads)
        rows[f"plain llama-cpp-python, {tag}"] = measure(plain, None, sampling, repeats)
        plain.llm.close()
        backend = load_backend(ModelSpec(adapter=adapter, backend="llamacpp", threads=threads))
        rows[f"storygen llamacpp, {tag}"] = measure(ours, backend, sampling, repeats)
        backend.close()
    for quantization in ("nf4", "fp32"):
        spec = ModelSpec(adapter="demo", backend="transformers", quantization=quantization)
        backend = load_backend(spec)
        rows[f"storygen transformers {quantization}, + adapter"] = measure(
            ours, backend, sampling, hf_repeats
        )
        del backend
    out = [{"threads": threads, "path": name, **r} for name, r in rows.items()]

    def ratio(label, a, b):
        ra, rb = rows[a], rows[b]
        out.append(
            {
                "threads": threads,
                "path": label,
                "tokens_per_s": ra["tokens_per_s"] / rb["tokens_per_s"],
                "ttft_s": ra["ttft_s"] / rb["ttft_s"],
            }
        )

    ratio(
        "ratio ours/plain llama.cpp, base",
        "storygen llamacpp, base",
        "plain llama-cpp-python, base",
    )
    ratio(
        "ratio ours/plain llama.cpp, + adapter",
        "storygen llamacpp, + adapter",
        "plain llama-cpp-python, + adapter",
    )
    ratio("ratio adapter/base, ours", "storygen llamacpp, + adapter", "storygen llamacpp, base")
    ratio(
        "ratio ours llamacpp/transformers nf4 (both + adapter)",
        "storygen llamacpp, + adapter",
        "storygen transformers nf4, + adapter",
    )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hf-repeats", type=int, default=1, help="the slow transformers paths")
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args(argv)
    sampling = SamplingConfig(max_new_tokens=args.tokens, seed=3)
    rows = []
    for t in (int(x) for x in args.threads.split(",")):
        rows += run_threads(t, sampling, args.repeats, args.hf_repeats)
    print(
        f"embedded SmolLM2-135M-Instruct (Q4_1 GGUF), {args.tokens} new tokens, EOS ignored, "
        f"median of {args.repeats} (transformers: {args.hf_repeats}) after a warm-up"
    )
    print(table(rows, ["threads", "path", "tokens_per_s", "ttft_s", "peak_rss_mib", "tokens"]))


if __name__ == "__main__":
    main()
