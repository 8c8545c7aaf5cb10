"""Reference perplexity through CTranslate2 against transformers' forward pass, side by side.

    python -m bench.perplexity [--base gemma3-270m] [--adapter none] [--stories 500]
                               [--reference 40] [--threads 2]

The stories are the shared WritingPrompts sample's, each after its tagged prompt, as the model
comparison scores them (full length: up to 1000 words). The first ``--reference`` are scored by
both engines: the per-story relative difference of the summed NLL says how equal they are (over
the stories CTranslate2 scored whole: a text longer than a sliding window goes to the forward
pass), and their tokens per second how fast. Then CTranslate2 scores all ``--stories`` alone,
and the throughput gives the time 1000 such stories take. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

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
    if not 1 <= args.reference <= args.stories:
        ap.error("--reference must be at least 1 and at most --stories")

    from eval.perplexity import NLL, story_nll
    from eval.scoring import Engine, TorchNLL
    from storygen.config import ModelSpec
    from storygen.loading import load_model

    pin_threads(args.threads)
    stories = real_stories(args.stories, SHARED_SAMPLE)
    adapter = None if args.adapter == "none" else args.adapter
    lm = load_model(ModelSpec(base=args.base, adapter=adapter, quantization="fp32"))
    ct2 = Engine(lm.model, lm.tokenizer, "ctranslate2", threads=args.threads)
    started = time.perf_counter()
    ct2([lm.tokenizer.eos_token_id or 0] * 2)  # the conversion and its check, timed apart
    convert_s = time.perf_counter() - started
    engines = {"transformers": TorchNLL(lm.model), "ctranslate2": ct2}

    def score(engine, pairs):
        """NLLs, seconds, and which stories went (partly) to the forward pass."""
        t0, out, fell_back = time.perf_counter(), [], []
        for prompt, story in pairs:
            before = Counter(ct2.texts)
            out.append(story_nll(engine, lm.tokenizer, prompt, story))
            fell_back.append("transformers" in ct2.texts - before)
        return out, time.perf_counter() - t0, fell_back

    reference = stories[: args.reference]
    runs = {name: score(engine, reference) for name, engine in engines.items()}
    tokens = sum(n.tokens for n in runs["transformers"][0])
    own = [  # the stories CTranslate2 scored whole: their agreement is its own
        (a, b)
        for a, b, fell in zip(*(runs[k][0] for k in engines), runs["ctranslate2"][2], strict=True)
        if not fell
    ]
    worst = max((abs(b.nll - a.nll) / a.nll for a, b in own), default=float("nan"))
    rows = [
        {"engine": name, "stories": len(reference), "tokens/s": tokens / s, "seconds": s}
        for name, (_, s, _) in runs.items()
    ]
    ratio = rows[0]["seconds"] / rows[1]["seconds"]
    every, seconds, fell_back = score(ct2, stories)
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
        "reference_stories_scored_whole_by_ctranslate2": len(own),
        "max_relative_nll_difference": worst,
        "story_tokens_mean": round(per_story, 1),
        "ctranslate2_tokens_per_s": round(rate, 1),
        "minutes_per_1000_stories": round(1000 * per_story / rate / 60, 1),
        "stories_partly_on_the_forward_pass": sum(fell_back),
        **total.summary(),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
