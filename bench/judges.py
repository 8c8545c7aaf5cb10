"""Judging time: every field of a full request on stories of about 600 words, on the CPU.

    python -m bench.judges [--stories 20] [--threads 2]

Side by side in one run: the validated judges (:mod:`storygen.judges`, sentence embeddings in
numpy plus logistic heads) and the rule checks they replaced (the tagger and word overlap,
:mod:`storygen.judges.rules`). The stories are the shared sample's (cut to 600 words), or the
fixture stories repeated when the sample is absent. Prints seconds per story of each and the
ratio; the target is under 1 s per story for the judges.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from pathlib import Path

from bench.common import table

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "data" / "writingprompts" / "train_sample_500.csv"


def stories(n: int) -> list[str]:
    from finetune.clean import clean_pair

    path = SAMPLE if SAMPLE.exists() else ROOT / "tests" / "fixtures" / "wp_hf.csv"
    csv.field_size_limit(1 << 30)
    out = []
    for row in csv.DictReader(path.open(encoding="utf-8")):
        pair, _ = clean_pair(row["prompt"], row["story"], "x", word_budget=600)
        if pair is not None and pair.words >= 500:
            out.append(pair.story)
    while len(out) < n:
        out += out or ["word " * 600]
    return out[:n]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stories", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    from storygen.judges import judges, rules
    from storygen.judges.features import StoryView
    from storygen.request import Character, Setting, StoryRequest

    request = StoryRequest(
        characters=[Character("Mara", ["stubborn", "kind"]), Character("Jonah", ["curious"])],
        setting=Setting("a lighthouse", "the 1920s"),
        genre="mystery",
        tone="suspenseful",
        ending="happy",
        pov="third person",
        arc="man in a hole",
        plot_points=["the lamp goes dark during a storm", "a smuggler's note is found"],
    )
    texts = stories(args.stories)
    j = judges()
    j.judge(texts[0], request)  # loading the embedder is not judging
    timings = {"judges": [], "rules": []}
    for text in texts:
        t0 = time.perf_counter()
        j.judge(text, request)
        timings["judges"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        view = StoryView(text, embed=lambda xs: None)
        for f in ("genre", "tone", "ending", "pov", "arc"):
            rules.label(view, f)
        for kind, phrase, name in [("place", "a lighthouse", ""), ("era", "the 1920s", "")]:
            rules.present(view, kind, phrase, name)
        rules.present(view, "character", "Mara")
        rules.present(view, "trait", "stubborn", "Mara")
        rules.present(view, "event", "the lamp goes dark during a storm")
        timings["rules"].append(time.perf_counter() - t0)
    rows = [
        {
            "judge": name,
            "stories": len(ts),
            "words": round(statistics.mean(len(t.split()) for t in texts)),
            "median_s": round(statistics.median(ts), 3),
            "max_s": round(max(ts), 3),
        }
        for name, ts in timings.items()
    ]
    print(f"every field of a full request, {args.threads} threads\n")
    print(table(rows, list(rows[0])))
    ratio = rows[0]["median_s"] / max(rows[1]["median_s"], 1e-9)
    print(f"\njudges / rules, median: {ratio:.1f}x; target: judges under 1 s per story")


if __name__ == "__main__":
    main()
