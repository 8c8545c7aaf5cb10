"""Writing speed: story tokens per second, the time to the first token, and the seconds a
reader waits for a whole story (with best-of-n: every attempt, the judging and the guard;
the other two figures are of the attempt kept), from each story's own provenance (what the
engine measured while it wrote that story). A story the repetition guard cut counts the
tokens it kept over all the time it took (the loop's tokens were written and thrown away), so a
model that loops more is slower by this figure, as a reader waits longer.
The comparison clears llama.cpp's prompt cache before each story: every story computes its
whole prompt.

Saved stories keep the timing of the run that wrote them, so the figure describes that run:
compare systems whose stories were written on the same machine with nothing else running.
"""

from __future__ import annotations

from eval.metric import Figure, Item, Metric, mean_of, ratio_of


def _score(item: Item) -> dict[str, float]:
    p = item.provenance or {}
    if not p.get("seconds") or p.get("new_tokens") is None:
        return {}  # a story without timing (an older generations file) counts for nothing here
    row = {"new_tokens": float(p["new_tokens"]), "writing_seconds": float(p["seconds"])}
    # best-of-n: every attempt, its judging and the guard, not only the attempt kept
    row["story_seconds"] = float((p.get("attempts") or {}).get("seconds") or p["seconds"])
    if p.get("first_token_s") is not None:
        row["first_token_s"] = float(p["first_token_s"])
    return row


def _figures(rows: list[dict]) -> list[Figure]:
    return [
        # pooled: all new tokens over all writing time, not a mean of per-story rates
        Figure("tokens_per_s", ratio_of("new_tokens", "writing_seconds"), "writing_seconds"),
        Figure("first_token_s", mean_of("first_token_s"), "first_token_s"),
        Figure("seconds_per_story", mean_of("story_seconds"), "story_seconds"),
    ]


METRIC = Metric("speed", "stories", _score, _figures)
