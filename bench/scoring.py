"""Scoring throughput: BLEU, ROUGE-1/2/L and diversity on test-split-sized data (15K pairs).

    python -m bench.scoring [--pairs 15000] [--plain-pairs 300]

Story pairs are drawn from the 500-pair sample (hypothesis and reference are different real
stories). Side by side on ``--plain-pairs`` pairs: our ROUGE against rouge_score's RougeScorer
(same tokenizer and stemmer, identical scores), then our full pipeline on all pairs.
"""

from __future__ import annotations

import argparse
import random
import time

from bench.common import table
from bench.preprocess import SAMPLE, read_sample


def pairs(n: int, sample) -> tuple[list[str], list[str]]:
    stories = [r["story"] for r in read_sample(sample)]
    rng = random.Random(0)
    hyps, refs = [], []
    for _ in range(n):
        a, b = rng.sample(range(len(stories)), 2)
        hyps.append(stories[a])
        refs.append(stories[b])
    return hyps, refs


def timed(fn, *args):
    """(result, seconds) of one call."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def main(argv=None) -> None:
    import sacrebleu
    from rouge_score.rouge_scorer import RougeScorer

    from eval.diversity import diversity
    from eval.overlap import bleu, rouge

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=15_000)
    parser.add_argument("--plain-pairs", type=int, default=300)
    parser.add_argument("--sample", default=SAMPLE)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)

    hyps, refs = pairs(args.pairs, args.sample)
    h_small, r_small = hyps[: args.plain_pairs], refs[: args.plain_pairs]
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)

    def plain_rouge(hs, rs):
        scores = [scorer.score(r, h) for h, r in zip(hs, rs)]
        return {k: sum(s[k].fmeasure for s in scores) / len(scores) for k in scores[0]}

    ours_small, t_ours = timed(rouge, h_small, r_small)
    plain_small, t_plain = timed(plain_rouge, h_small, r_small)
    assert all(abs(ours_small[k] - plain_small[k]) < 1e-9 for k in ours_small)
    rows = [
        {"step": f"ROUGE, {args.plain_pairs} pairs: storygen", "seconds": t_ours},
        {"step": f"ROUGE, {args.plain_pairs} pairs: rouge_score", "seconds": t_plain},
        {"step": "ratio rouge_score/storygen (speed-up)", "seconds": t_plain / t_ours},
    ]
    plain_b, t_plain_bleu = timed(lambda: sacrebleu.corpus_bleu(hyps, [refs]).score)
    b, t_bleu = timed(bleu, hyps, refs, args.workers)
    assert abs(b - plain_b) < 1e-9
    r, t_rouge = timed(rouge, hyps, refs, args.workers)
    d, t_div = timed(diversity, hyps)
    total = t_bleu + t_rouge + t_div
    rows += [
        {
            "step": f"BLEU, {args.pairs} pairs: sacrebleu corpus_bleu, 1 process",
            "seconds": t_plain_bleu,
            "value": plain_b,
        },
        {
            "step": f"BLEU, {args.pairs} pairs: storygen, {args.workers} workers (same score)",
            "seconds": t_bleu,
            "value": b,
        },
        {"step": "ratio sacrebleu/storygen (speed-up)", "seconds": t_plain_bleu / t_bleu},
        {
            "step": f"ROUGE-1/2/L, {args.pairs} pairs, {args.workers} workers",
            "seconds": t_rouge,
            "value": r["rougeL"],
        },
        {
            "step": f"diversity (distinct-1/2, self-BLEU, repeats), {args.pairs} stories",
            "seconds": t_div,
            "value": d["distinct_2"],
        },
        {"step": "total: BLEU + ROUGE + diversity (storygen)", "seconds": total},
        {
            "step": f"estimated rouge_score ROUGE on {args.pairs} pairs",
            "seconds": t_plain / args.plain_pairs * args.pairs,
        },
    ]
    print(f"scoring {args.pairs} story pairs on {args.workers} cores")
    print(table(rows, ["step", "seconds", "value"]))


if __name__ == "__main__":
    main()
