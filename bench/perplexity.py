"""Reference perplexity through CTranslate2 against transformers' forward pass, side by side.

    python -m bench.perplexity [--base gemma3-270m] [--adapter none] [--stories 500]
                               [--reference 40] [--threads 2]

The stories are the shared WritingPrompts sample's, each after its tagged prompt, as the model
comparison scores them (full length: up to 1000 words). The first ``--reference`` are scored by
both engines: the per-story relative difference of the summed NLL says how equal they are, and
their tokens per second how fast. Then CTranslate2 scores all ``--stories`` alone, and the
throughput gives the time 1000 such stories take. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import time

from bench.common import pin_threads, table
from bench.parity import SHARED_SAMPLE, real_stories


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="embedded")
    ap.add_argument("--adapter", default="demo", help="demo (the base's demo adapter) or none")
    ap.add_argument("--stories", type=int, default=500, help="stories CTranslate2 scores")
    ap.add_argument("--reference", type=int, default=40, help="of those, scored by both")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from eval.perplexity import NLL, story_nll
    from eval.scoring import Ct2NLL, TorchNLL
    from storygen.config import ModelSpec
    from storygen.loading import load_model

    pin_threads(args.threads)
    stories = real_stories(args.stories, SHARED_SAMPLE)
    adapter = None if args.adapter == "none" else args.adapter
    lm = load_model(ModelSpec(base=args.base, adapter=adapter, quantization="fp32"))
    started = time.perf_counter()
    ct2 = Ct2NLL.convert(lm.model, lm.tokenizer, threads=args.threads)
    convert_s = time.perf_counter() - started
    engines = {"transformers": TorchNLL(lm.model), "ctranslate2": ct2}

    def score(engine, pairs):
        t0, out = time.perf_counter(), []
        for prompt, story in pairs:
            out.append(story_nll(engine, lm.tokenizer, prompt, story))
        return out, time.perf_counter() - t0

    reference = stories[: args.reference]
    runs = {name: score(engine, reference) for name, engine in engines.items()}
    tokens = sum(n.tokens for n in runs["transformers"][0])
    worst = max(
        abs(b.nll - a.nll) / a.nll
        for a, b in zip(runs["transformers"][0], runs["ctranslate2"][0], strict=True)
    )
    rows = [
        {"engine": name, "stories": len(reference), "tokens/s": tokens / s, "seconds": s}
        for name, (_, s) in runs.items()
    ]
    ratio = rows[0]["seconds"] / rows[1]["seconds"]
    fallbacks_before = ct2.fallbacks
    every, seconds = score(ct2, stories)
    total = NLL()
    for n in every:
        total += n
    rate = total.tokens / seconds
    per_story = total.tokens / len(stories)
    rows.append(
        {
            "engine": "ctranslate2, all",
            "stories": len(stories),
            "tokens/s": rate,
            "seconds": seconds,
        }
    )
    print(table(rows, ["engine", "stories", "tokens/s", "seconds"]))
    result = {
        "base": args.base,
        "adapter": args.adapter,
        "threads": args.threads,
        "convert_s": round(convert_s, 1),
        "speedup": round(ratio, 2),
        "max_relative_nll_difference": worst,
        "story_tokens_mean": round(per_story, 1),
        "ctranslate2_tokens_per_s": round(rate, 1),
        "minutes_per_1000_stories": round(1000 * per_story / rate / 60, 1),
        "texts_scored_by_fallback": ct2.fallbacks - fallbacks_before,
        **total.summary(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
