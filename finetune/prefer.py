"""Preference data from people: A/B votes, readers' thumbs and readers' edits.

- **Votes** (the Rate tab's log, with the A/B items that hold the stories): the preferred story
  is ``chosen``, the other ``rejected``; ties and "both bad" are left out. With a criterion
  (``coherence``, ...), its 1-5 ratings decide instead of the overall choice.
- **Edits** (the Write tab): the reader's version is ``chosen`` over the story as written.
- **Thumbs** (the Write tab): unpaired examples, good (up) or bad (down).

Written in TRL's dataset formats: ``pairs.jsonl`` (``prompt``, ``chosen``, ``rejected``: DPO)
and ``unpaired.jsonl`` (``prompt``, ``completion``, ``label``: KTO), each row with its
``source`` and what made the stories; ``report.json`` counts the examples of each source and
the records left out, by reason. The prompt is the story's request in the tagged prompt format
(with its plan, when it was written from one): what the adapter being tuned reads.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from human_ratings.pairs import Item, ItemLog
from human_ratings.reactions import ReactionLog
from human_ratings.store import CRITERIA, VoteStore
from storygen.prompt_format import FORMAT_VERSIONS, PROMPT_FORMAT_VERSION, render_request
from storygen.request import Plan, RequestError, StoryRequest


class PreferError(ValueError):
    """Preference data that cannot be built as asked."""


@dataclass
class PreferReport:
    pairs: Counter = field(default_factory=Counter)
    unpaired: Counter = field(default_factory=Counter)
    dropped: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": dict(self.pairs),
            "unpaired": dict(self.unpaired),
            "dropped": dict(self.dropped.most_common()),
            "total_pairs": sum(self.pairs.values()),
            "total_unpaired": sum(self.unpaired.values()),
        }


def story_prompt(
    request: StoryRequest, provenance: dict[str, Any], version: str = PROMPT_FORMAT_VERSION
) -> str:
    """The tagged prompt of a story's request (and plan), as the tuned adapter will read it
    (in its parent's prompt format ``version``)."""
    plan = provenance.get("plan")
    plan = Plan(plan["premise"], plan["beats"], plan.get("origin", "model")) if plan else None
    return render_request(request, version, plan)


def _request(provenance: dict[str, Any]) -> StoryRequest:
    return StoryRequest.from_dict(provenance["request"])


def vote_pairs(
    votes,
    items: dict[str, Item],
    criterion: str | None,
    report: PreferReport,
    version: str = PROMPT_FORMAT_VERSION,
):
    """(chosen, rejected) pairs from the effective votes (the latest per annotator and item),
    prompts in format ``version``."""
    if criterion is not None and criterion not in CRITERIA:
        raise PreferError(f"criterion must be one of {', '.join(CRITERIA)}, not {criterion!r}")
    for vote in votes:
        item = items.get(vote.item_id)
        if item is None:
            report.dropped["vote: its A/B item is in no items file given"] += 1
            continue
        if criterion is None:
            if vote.choice in ("tie", "both_bad"):
                report.dropped[f"vote: {vote.choice.replace('_', ' ')}"] += 1
                continue
            winner = vote.choice
        else:
            left, right = (getattr(vote, f"{side}_{criterion}") for side in ("left", "right"))
            if left is None or right is None:
                report.dropped[f"vote: {criterion} not rated on both sides"] += 1
                continue
            if left == right:
                report.dropped[f"vote: {criterion} rated the same on both sides"] += 1
                continue
            winner = "left" if left > right else "right"
        try:
            prompt = render_request(item.request, version)
        except RequestError:  # an arc asked of a version-1 parent
            report.dropped[f"vote: its request has what {version} cannot say"] += 1
            continue
        sides = {"left": vote.system_left, "right": vote.system_right}
        loser = "right" if winner == "left" else "left"
        chosen, rejected = item.stories[sides[winner]], item.stories[sides[loser]]
        report.pairs["votes"] += 1
        yield {
            "prompt": prompt,
            "prompt_format": version,
            "chosen": chosen["text"],
            "rejected": rejected["text"],
            "source": "vote",
            "item_id": item.item_id,
            "annotator": vote.annotator,
            "criterion": criterion or "overall",
            "systems": {"chosen": sides[winner], "rejected": sides[loser]},
        }


def reaction_examples(reactions, report: PreferReport, version: str = PROMPT_FORMAT_VERSION):
    """Edits as pairs (the reader's version over the model's), thumbs as unpaired examples,
    prompts in format ``version``; returns (pairs, unpaired)."""
    pairs, unpaired = [], []
    for r in reactions:
        if r.provenance.get("continued_from_chars"):
            report.dropped[f"{r.kind}: a story continued from the reader's own text"] += 1
            continue
        try:
            prompt = story_prompt(_request(r.provenance), r.provenance, version)
        except (KeyError, TypeError, RequestError):
            report.dropped[f"{r.kind}: no usable request in its provenance"] += 1
            continue
        meta = {"prompt_format": version, "system": r.system, "timestamp_utc": r.timestamp_utc}
        if r.kind == "edit":
            report.pairs["edits"] += 1
            pairs.append(
                {
                    "prompt": prompt,
                    "chosen": r.edited,
                    "rejected": r.story,
                    "source": "edit",
                    **meta,
                }
            )
        else:
            report.unpaired[f"thumbs_{r.kind}"] += 1
            unpaired.append(
                {
                    "prompt": prompt,
                    "completion": r.story,
                    "label": r.kind == "up",
                    "source": f"thumbs_{r.kind}",
                    **meta,
                }
            )
    return pairs, unpaired


def build_preferences(
    out: Path,
    votes: Path | None = None,
    items: list[Path] = (),
    reactions: Path | None = None,
    criterion: str | None = None,
    prompt_format: str = PROMPT_FORMAT_VERSION,
) -> PreferReport:
    """Write ``pairs.jsonl``, ``unpaired.jsonl`` and ``report.json`` under ``out``, every
    prompt in ``prompt_format``: the one of the adapter to be tuned (``tune`` checks)."""
    if votes is None and reactions is None:
        raise PreferError("give the votes log, the reactions log, or both")
    if prompt_format not in FORMAT_VERSIONS:
        raise PreferError(f"unknown prompt format {prompt_format!r}; known: {FORMAT_VERSIONS}")
    report = PreferReport()
    by_id: dict[str, Item] = {}
    for path in items:
        if not Path(path).exists():
            raise PreferError(f"{path} does not exist")
        found, bad = ItemLog(path).read_all()  # a live log's torn last line is left out
        by_id.update({it.item_id: it for it in found})
        if bad:
            report.dropped[f"items file {Path(path).name}: unreadable line"] += bad
    pairs: list[dict] = []
    unpaired: list[dict] = []
    if votes is not None:
        if not Path(votes).exists():
            raise PreferError(f"{votes} does not exist")
        if not items:
            raise PreferError("votes name their A/B items: give the items file(s) with --items")
        pairs += list(vote_pairs(VoteStore(votes).votes(), by_id, criterion, report, prompt_format))
    if reactions is not None:
        if not Path(reactions).exists():
            raise PreferError(f"{reactions} does not exist")
        more, unpaired = reaction_examples(ReactionLog(reactions).read_all(), report, prompt_format)
        pairs += more
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("pairs.jsonl", pairs), ("unpaired.jsonl", unpaired)):
        tmp = out / f".{name}.partial"
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        tmp.replace(out / name)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report
