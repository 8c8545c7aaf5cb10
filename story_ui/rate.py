"""Rate tab handlers: blind A/B judging. Which system is on which side lives only in the
server-side session state until the vote is cast."""

from __future__ import annotations

import hmac
import random

from human_ratings.pairs import Item, assign_sides
from human_ratings.store import CRITERIA, DuplicateVote, Vote, VoteError, settings_json
from storygen.prompt_format import request_fields

CHOICE_LABELS = {
    "A is better": "left",
    "B is better": "right",
    "Tie": "tie",
    "Both are bad": "both_bad",
}
EMPTY = ("", "", "")


def request_markdown(item: Item) -> str:
    rows = "\n".join(f"- **{k}**: {v}" for k, v in request_fields(item.request).items())
    return f"**The request** (item `{item.item_id}`)\n\n{rows}"


def next_item(services, annotator: str) -> Item | None:
    """An item this annotator has not rated yet (random order, so annotators spread out);
    in live mode a new one is generated when none is left."""
    done = services.store.rated_items(annotator)
    todo = [it for it in list(services.items) if it.item_id not in done]
    if todo:
        return random.SystemRandom().choice(todo)
    return services.live_item() if services.config.live else None


def show(services, annotator: str, note: str = ""):
    """(request, story A, story B, state, status) for the annotator's next item."""
    item = next_item(services, annotator)
    if item is None:
        total = len(services.items)
        msg = (
            "No items to rate: no pairs file is loaded (start the app with --live to generate "
            "items on the spot)."
            if not total
            else (f"You have rated all {total} items. Thank you!")
        )
        return (*EMPTY, {"annotator": annotator}, (note + "\n\n" + msg).strip())
    left, right = assign_sides(item, random.Random(random.SystemRandom().random()))
    state = {"annotator": annotator, "item_id": item.item_id, "left": left, "right": right}
    return (
        request_markdown(item),
        item.stories[left]["text"],
        item.stories[right]["text"],
        state,
        (note + "\n\n" + "Read both stories, then vote.").strip(),
    )


def start(services, annotator: str, password: str):
    """Check the annotator's ID (and the password, when one is configured)."""
    annotator = (annotator or "").strip()
    if not annotator or len(annotator) > 64 or not annotator.isprintable():
        return (*EMPTY, {}, "Enter an annotator ID (up to 64 printable characters).")
    expected = services.config.rater_password
    if expected and not hmac.compare_digest((password or "").encode(), expected.encode()):
        return (*EMPTY, {}, "Wrong password.")
    return show(services, annotator)


def vote(services, state: dict, choice_label: str, ratings: list, comment: str):
    """Record the vote, reveal the systems, and move on to the next item."""
    if not state or "item_id" not in state:
        return (*EMPTY, state or {}, "Start with your annotator ID first.")
    choice = CHOICE_LABELS.get(choice_label)
    if choice is None:
        return (gr_skip(), gr_skip(), gr_skip(), state, "Pick A, B, tie or both bad first.")
    item = next(it for it in services.items if it.item_id == state["item_id"])
    left, right = state["left"], state["right"]
    prov = {side: item.stories[s].get("provenance", {}) for side, s in (("l", left), ("r", right))}
    values = dict(
        zip(
            [f"{side}_{c}" for side in ("left", "right") for c in CRITERIA],
            [int(r) if r not in (None, "") else None for r in ratings],
        )
    )
    try:
        services.store.append(
            Vote(
                annotator=state["annotator"],
                item_id=item.item_id,
                system_left=left,
                system_right=right,
                choice=choice,
                comment=comment or "",
                seed_left=prov["l"].get("sampling", {}).get("seed"),
                seed_right=prov["r"].get("sampling", {}).get("seed"),
                settings=settings_json(
                    prov["l"].get("sampling", {}), prov["r"].get("sampling", {})
                ),
                **values,
            )
        )
    except DuplicateVote:
        return show(
            services, state["annotator"], "You had already rated that item; here is another."
        )
    except VoteError as exc:
        return (gr_skip(), gr_skip(), gr_skip(), state, f"Vote not saved: {exc}")
    reveal = f"Saved. **A** was `{left}`, **B** was `{right}`."
    return show(services, state["annotator"], reveal)


def gr_skip():
    import gradio as gr

    return gr.skip()
