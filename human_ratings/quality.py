"""Whether annotators read: gold items, per-annotator figures, and the exclusion rule.

**Gold items** look like any other item (a request and two stories) but one story is known to
be worse, made by the project from a study item's story:

- ``shuffled``: the same story with its sentences in a random order (it no longer reads);
- ``other_request``: a story written for another item's request, against one written for this
  request (it does not follow what was asked).

An annotator passes a gold item by preferring the intact story (a tie or "both bad" fails).

**Per annotator**: votes, gold items seen and passed, median seconds per item (measured by the
server from the item's being shown), the share of "A" answers, and agreement with the majority
(on items with at least three votes: how often their decisive vote names the winner most other
annotators named). The study's rule (:class:`Exclusion`) marks an annotator excluded; every
figure in Results is shown with and without the excluded.
"""

from __future__ import annotations

import random
import statistics
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from human_ratings.pairs import Item
from storygen.text import sentences

GOLD_PREFIX = "gold-"
GOLD_KINDS = ("shuffled", "other_request")


@dataclass
class Exclusion:
    """When an annotator's votes are left out (each test applies once its minimum is met)."""

    min_gold_pass: float = 0.7
    """Excluded below this share of gold items passed, once ``min_gold`` are seen and two are
    failed (one slip of a careful reader excludes no one)."""
    min_gold: int = 2
    min_median_seconds: float = 15.0
    """Excluded when the median time per item is below this (too fast to have read both)."""
    max_one_side: float = 0.85
    """Excluded when more than this share of their decisive votes name the same side, and a
    binomial test says so (p < 0.01: sides are counterbalanced, so a reader's choices fall on
    both about equally)."""
    min_majority_agreement: float = 0.5
    """Excluded below this agreement with the majority (with at least ``min_votes`` items)."""
    min_votes: int = 6
    """The timing, side and majority tests apply from this many votes."""

    def __post_init__(self):
        for name in ("min_gold_pass", "max_one_side", "min_majority_agreement"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"exclusion: {name} must be a share between 0 and 1")
        for name in ("min_gold", "min_votes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"exclusion: {name} must be a whole number of at least 1")
        if not isinstance(self.min_median_seconds, (int, float)) or self.min_median_seconds < 0:
            raise ValueError("exclusion: min_median_seconds must be a number of seconds")


def make_gold(items: list[Item], n: int, kinds=GOLD_KINDS, seed: int = 0) -> list[dict]:
    """``n`` gold items from the study's items, as pairs-file rows with a ``gold`` field
    naming the better story (the names are the study's own systems, so a gold item cannot be
    told apart by them)."""
    rng = random.Random(seed)
    usable = [it for it in items if len(it.stories) == 2]
    if not usable:
        return []
    out = []
    for i in range(n):
        item = usable[i % len(usable)] if i < len(usable) else rng.choice(usable)
        kind = kinds[i % len(kinds)]
        good_system, bad_system = rng.sample(sorted(item.stories), 2)
        good = item.stories[good_system]["text"]
        if kind == "shuffled":
            bad = shuffled(good, rng)
            if bad is None:
                kind = "other_request"
        if kind == "other_request":
            others = [it for it in usable if it.item_id != item.item_id]
            if not others:
                continue
            other = rng.choice(others)
            bad = other.stories[sorted(other.stories)[0]]["text"]
        out.append(
            {
                "item_id": f"{GOLD_PREFIX}{i}",
                "request": item.request.to_dict(),
                "stories": {
                    good_system: {"text": good, "provenance": {}},
                    bad_system: {"text": bad, "provenance": {}},
                },
                "gold": {"better": good_system, "kind": kind, "from": item.item_id},
            }
        )
    return out


def shuffled(text: str, rng: random.Random) -> str | None:
    """``text`` with its sentences in another order and its paragraphs as many and as long
    (in sentences) as before, so that the layout does not give the gold item away; None when
    it has fewer than 4 distinct sentences (no order to break)."""
    paragraphs = [sentences(p) for p in text.split("\n\n")]
    paragraphs = [p for p in paragraphs if p]
    flat = [x for p in paragraphs for x in p]
    if len(flat) < 4 or len(set(flat)) < 2:
        return None
    order = flat[:]
    while order == flat:  # ends: two distinct sentences have another order
        rng.shuffle(order)
    out, at = [], 0
    for p in paragraphs:
        out.append(" ".join(order[at : at + len(p)]))
        at += len(p)
    return "\n\n".join(out)


def annotator_figures(votes, gold: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Per annotator: votes, gold seen and passed, median seconds, share of A, agreement with
    the majority. ``gold``: gold item id -> the better system."""
    by_item: dict[str, list] = defaultdict(list)
    for v in votes:
        if v.item_id not in gold:
            by_item[v.item_id].append(v)
    out: dict[str, dict[str, Any]] = {}
    for annotator in sorted({v.annotator for v in votes}):
        mine = [v for v in votes if v.annotator == annotator]
        rated = [v for v in mine if v.item_id not in gold]
        golds = [v for v in mine if v.item_id in gold]
        passed = sum(v.winner == gold[v.item_id] for v in golds)
        seconds = [v.seconds for v in mine if v.seconds is not None]
        decisive = [v for v in mine if v.choice in ("left", "right")]
        agree = same = 0
        for v in rated:
            others = [o.winner for o in by_item[v.item_id] if o.annotator != annotator and o.winner]
            if v.winner is None or len(others) < 2:
                continue
            top, n = Counter(others).most_common(1)[0]
            if n * 2 > len(others):  # a clear majority among the others
                same += 1
                agree += v.winner == top
        out[annotator] = {
            "votes": len(rated),
            "gold_seen": len(golds),
            "gold_passed": passed,
            "gold_pass_rate": passed / len(golds) if golds else float("nan"),
            "median_seconds": statistics.median(seconds) if seconds else float("nan"),
            "decisive": len(decisive),
            "share_a": (
                sum(v.choice == "left" for v in decisive) / len(decisive)
                if decisive
                else float("nan")
            ),
            "majority_items": same,
            "majority_agreement": agree / same if same else float("nan"),
            "anonymous": any(v.anonymous for v in mine),
        }
    return out


def excluded(figures: dict[str, Any], rule: Exclusion) -> list[str]:
    """Why the rule excludes this annotator ([] when it does not)."""
    why = []
    failed = figures["gold_seen"] - figures["gold_passed"]
    if (
        figures["gold_seen"] >= rule.min_gold
        and failed >= 2
        and figures["gold_pass_rate"] < rule.min_gold_pass
    ):
        why.append(f"passed {figures['gold_passed']} of {figures['gold_seen']} gold items")
    total = figures["votes"] + figures["gold_seen"]
    if total >= rule.min_votes:
        if figures["median_seconds"] < rule.min_median_seconds:
            why.append(f"median {figures['median_seconds']:.1f} s per item")
        share, n = figures["share_a"], figures["decisive"]
        if share == share and max(share, 1 - share) > rule.max_one_side:
            from scipy.stats import binomtest

            if binomtest(round(share * n), n, 0.5).pvalue < 0.01:
                why.append(f"chose the same side in {max(share, 1 - share):.0%} of decisive votes")
    if (
        figures["majority_items"] >= rule.min_votes
        and figures["majority_agreement"] < rule.min_majority_agreement
    ):
        why.append(f"agreed with the majority on {figures['majority_agreement']:.0%} of items")
    return why


def review(votes, gold: dict[str, str], rule: Exclusion) -> dict[str, dict[str, Any]]:
    """Every annotator's figures with ``excluded`` (the reasons, [] when kept)."""
    figures = annotator_figures(votes, gold)
    for f in figures.values():
        f["excluded"] = excluded(f, rule)
    return figures


def rule_dict(rule: Exclusion) -> dict:
    return asdict(rule)
