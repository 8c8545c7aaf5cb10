"""Generation speed of every path, side by side in one run, on 1 and 2 threads.

    python -m bench.generation [--tokens 128] [--repeats 3] [--threads 1,2] [--hf-repeats 1]

On the embedded model, the same request, the same sampling settings, the same number of new
tokens (EOS ignored), after a warm-up run of each path:

- plain llama-cpp-python on the same Q4_1 GGUF (its own C sampler, ``Llama.generate``), without
  and with the demo adapter's GGUF form;
- storygen's llamacpp backend (validation, prompt, shared sampler, repetition guard, incremental
  text), without and with the adapter, each run computing its whole prompt (cold), and once
  more with the adapter when the same prompt comes again (Regenerate: the cached prefix is kept);
- storygen's transformers backend, NF4 + adapter (the old default) and fp32 + adapter.

Prints tokens/s, time to first token and peak memory (of the whole process so far), and the
ratios the targets are stated in: ours/plain llama.cpp (target >= 0.9), the adapter's cost, and
ours/NF4 + adapter (target >= 10). Then the time to first token of a short request (genre and
length only) on both llama.cpp paths (target < 0.3 s).
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import table
from eval.resources import PeakRSS
from storygen.config import ModelSpec, SamplingConfig
from storygen.request import Character, Setting, StoryRequest

REQUEST = StoryRequest(
    characters=[Character("Mara", ["stubborn", "kind"]), Character("Jonah", ["curious"])],
    setting=Setting("a lighthouse", "the 1920s"),
    genre="mystery",
    ending="happy",
    length="short",
)
SHORT_REQUEST = StoryRequest(genre="horror", length="flash")


class Ours:
    """storygen's streaming path on a loaded backend; ``cold`` forgets llama.cpp's cached prompt
    before each run, so every run computes its whole prompt as plain llama.cpp does."""

    def __init__(self, request: StoryRequest = REQUEST, cold: bool = True):
        self.request, self.cold = request, cold

    def __call__(self, backend, sampling: SamplingConfig) -> dict:
        from storygen.generation import stream_story

        if self.cold and hasattr(backend, "clear_cache"):
            backend.clear_cache()
        t0 = time.perf_counter()
        first = None
        for update in stream_story(backend, self.request, sampling, stop_on_eos=False):
            if first is None and update.delta:
                first = time.perf_counter() - t0
            if update.story is not None:
                n = update.story.provenance["new_tokens"]
        return {"tokens": n, "seconds": time.perf_counter() - t0, "ttft": first}


class PlainLlama:
    """llama-cpp-python used directly: tokenize, ``generate`` with its own sampler, detokenize."""

    def __init__(self, backend, threads: int, request: StoryRequest = REQUEST):
        from llama_cpp import Llama

        kwargs = {"lora_path": str(backend.lora_path)} if backend.lora_path else {}
        self.llm = Llama(
            model_path=str(backend.model_path),
            n_ctx=4096,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
            **kwargs,
        )
        self.prompt = backend.prompt(request).text  # the same prompt text as ours

    def __call__(self, _, sampling: SamplingConfig) -> dict:
        t0 = time.perf_counter()
        ids = self.llm.tokenize(self.prompt.encode(), add_bos=False, special=True)
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
        backend = load_backend(ModelSpec(adapter=adapter, backend="llamacpp", threads=threads))
        plain = PlainLlama(backend, threads)
        rows[f"plain llama-cpp-python, {tag}"] = measure(plain, None, sampling, repeats)
        plain.llm.close()
        rows[f"storygen llamacpp, {tag}"] = measure(Ours(), backend, sampling, repeats)
        if adapter:
            rows["storygen llamacpp, + adapter, same prompt again"] = measure(
                Ours(cold=False), backend, sampling, repeats
            )
        backend.close()
    for quantization in ("nf4", "fp32"):
        spec = ModelSpec(adapter="demo", backend="transformers", quantization=quantization)
        backend = load_backend(spec)
        rows[f"storygen transformers {quantization}, + adapter"] = measure(
            Ours(), backend, sampling, hf_repeats
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


def short_request_ttft(threads: int, repeats: int) -> list[dict]:
    """Time to first token of a short request, cold, on plain llama.cpp and on ours."""
    from storygen.backends import load_backend

    sampling = SamplingConfig(max_new_tokens=4, seed=3)
    rows = []
    for adapter in (None, "demo"):
        backend = load_backend(ModelSpec(adapter=adapter, backend="llamacpp", threads=threads))
        plain = PlainLlama(backend, threads, SHORT_REQUEST)
        ours = Ours(SHORT_REQUEST)
        tag = "+ adapter" if adapter else "base"
        prompt_tokens = len(backend.tokenize(backend.prompt(SHORT_REQUEST)))
        for name, fn, target in (("plain", plain, None), ("storygen", ours, backend)):
            r = measure(fn, target, sampling, repeats)
            rows.append(
                {
                    "threads": threads,
                    "path": f"{name}, {tag}",
                    "prompt_tokens": prompt_tokens,
                    "ttft_s": r["ttft_s"],
                }
            )
        plain.llm.close()
        backend.close()
    return rows


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
    short = []
    for t in (int(x) for x in args.threads.split(",")):
        short += short_request_ttft(t, args.repeats)
    print(f"\ntime to first token, short request ({SHORT_REQUEST.genre}, {SHORT_REQUEST.length}):")
    print(table(short, ["threads", "path", "prompt_tokens", "ttft_s"]))


if __name__ == "__main__":
    main()
