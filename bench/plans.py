"""The plan's shape: the guided plan against the model's free one, side by side.

    python -m bench.plans [--adapter demo] [--requests 20] [--test runs/data_wp500_v3/valid.jsonl]

The same held-out requests and seeds (1000 + i) through the same backend (llama.cpp on the
embedded GGUF by default): ``guided`` is :func:`storygen.generation.stream_plan` (the model
continues after ``premise:``, ``1.`` ... ``5.``, one sentence a line); ``free`` is one decode of
the plan prompt to the model's end of text, a marker or 256 tokens, read by the same parser
(how plans were written before session 9). Printed per path: beats per plan, the share of plans
with five beats, the share of beats that are lines of narration (the rule that picks training
beats, :func:`storygen.arcs.is_narration`), words per beat, plans with a piece of a marker
(``<|``, ``|>``) left in a beat, and seconds per plan.
"""

from __future__ import annotations

import argparse
import time
from contextlib import closing
from pathlib import Path

from bench.common import table


def free_plan(backend, request, sampling):
    """The plan as the model writes it unguided: one decode, cut at a marker, parsed."""
    from storygen.generation import PLAN_TOKENS, IncrementalText, decode, plan_from_text

    prompt = backend.prompt(request, task="plan")
    text_of, text = IncrementalText(backend), ""
    with closing(decode(backend, prompt, sampling, PLAN_TOKENS)) as steps:
        for ids, why in steps:
            if why:
                break
            text = text_of(ids)
            if "<|story|>" in text or "<|request|>" in text:
                break
    return plan_from_text(text.split("<|story|>")[0].split("<|request|>")[0])


def shape(plans: list, seconds: float) -> dict:
    from storygen.arcs import is_narration

    beats = [b for p in plans if p for b in p.beats]
    return {
        "plans": len(plans),
        "unusable": sum(p is None for p in plans),
        "beats_per_plan": len(beats) / max(len(plans), 1),
        "five_beats": sum(bool(p) and len(p.beats) == 5 for p in plans) / max(len(plans), 1),
        "narration": sum(map(is_narration, beats)) / max(len(beats), 1),
        "words_per_beat": sum(len(b.split()) for b in beats) / max(len(beats), 1),
        "marker_left": sum(any("<|" in b or "|>" in b for b in p.beats) for p in plans if p),
        "s_per_plan": seconds / max(len(plans), 1),
    }


def main(argv: list[str] | None = None) -> None:
    from eval.compare import load_test_set
    from storygen.backends import load_backend
    from storygen.config import ModelSpec, SamplingConfig
    from storygen.generation import generate_plan
    from storygen.items import story_seed
    from storygen.request import RequestError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--adapter", default="demo")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--test", type=Path, default=Path("runs/data_wp500_v3/valid.jsonl"))
    args = parser.parse_args(argv)
    items = load_test_set(args.test, args.requests)
    backend = load_backend(ModelSpec(adapter=args.adapter))
    rows = []
    for name in ("free", "guided"):
        plans, t0 = [], time.perf_counter()
        write = free_plan if name == "free" else generate_plan
        for i, item in enumerate(items):
            try:
                sampling = SamplingConfig(seed=story_seed(1000, i))
                plans.append(write(backend, item["request"], sampling))
            except RequestError:  # no usable plan
                plans.append(None)
        rows.append({"path": name, **shape(plans, time.perf_counter() - t0)})
    print(f"{len(items)} held-out requests of {args.test}, adapter {args.adapter}, seeds 1000+i")
    print(table(rows, list(rows[0])))


if __name__ == "__main__":
    main()
