"""Rate tab handlers: blind A/B judging. Which system is on which side lives only in the
server-side session state until the vote is cast."""

from __future__ import annotations

import hmac
import random
import secrets

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
SCALE = "1 = poor, 5 = excellent; optional"
"""What a 1-5 rating means, shown beside every rating control."""


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


# Every handler returns (request, story A, story B, state, shown, start message, vote message).
# The messages appear beside the control that caused them. ``shown`` changes only when a new
# item (or none) replaces the one on screen, and only then is the answer form cleared: a refused
# Start or a refused vote leaves everything the annotator typed in place.


def show(services, annotator: str, note: str = "", where: str = "vote"):
    """The annotator's next item; ``note`` goes beside Start (``where="start"``) or Submit."""
    item = next_item(services, annotator)
    if item is None:
        total = len(services.items)
        msg = (
            "No items to rate: no pairs file is loaded (start the app with --live to generate "
            "items on the spot)."
            if not total
            else f"You have rated all {total} items. Thank you!"
        )
        note = (note + "\n\n" + msg).strip()
        return _say(*EMPTY, {"annotator": annotator}, where, note, shown=secrets.token_hex(8))
    left, right = assign_sides(item, random.Random(random.SystemRandom().random()))
    state = {"annotator": annotator, "item_id": item.item_id, "left": left, "right": right}
    note = (note + "\n\n" + "Read both stories, then vote.").strip()
    return _say(
        request_markdown(item),
        item.stories[left]["text"],
        item.stories[right]["text"],
        state,
        where,
        note,
        shown=secrets.token_hex(8),
    )


def _say(request, a, b, state, where: str, message: str, shown=None):
    start_msg, vote_msg = (message, "") if where == "start" else ("", message)
    return request, a, b, state, gr_skip() if shown is None else shown, start_msg, vote_msg


def _keep(state, where: str, message: str):
    """Leave the screen as it is, and say something beside the control that was used."""
    skip = gr_skip()
    return _say(skip, skip, skip, state, where, message)


def _hold(item: Item, state: dict, message: str):
    """The item voted on, held on screen (and sent to API clients) with the message."""
    return _say(
        request_markdown(item),
        item.stories[state["left"]]["text"],
        item.stories[state["right"]]["text"],
        state,
        "vote",
        message,
    )


def start(services, annotator: str, password: str, state: dict | None = None):
    """Check the annotator's ID (and the password, when one is configured). A refusal leaves
    the item on screen, if any, and the answers typed for it."""
    state = state or {}
    if not isinstance(annotator, str) or not isinstance(password, (str, type(None))):
        return _keep(state, "start", "The annotator ID and password must be text.")
    annotator = annotator.strip()
    if not annotator or len(annotator) > 64 or not annotator.isprintable():
        return _keep(state, "start", "Enter an annotator ID (up to 64 printable characters).")
    expected = services.config.rater_password
    if expected and not hmac.compare_digest((password or "").encode(), expected.encode()):
        return _keep(state, "start", "Wrong password.")
    return show(services, annotator, where="start")


def next_one(services, state: dict):
    """ "Next item": a new item after a vote (or instead of the one on screen)."""
    if not state or not state.get("annotator"):
        return _keep(state or {}, "vote", "Start with your annotator ID first (at the top).")
    return show(services, state["annotator"])


def vote(services, state: dict, choice_label: str, ratings: list, comment: str):
    """Record the vote and reveal the systems beside the stories they wrote; the item stays on
    screen until "Next item"."""
    if not state or not state.get("annotator"):
        return _keep(state or {}, "vote", "Start with your annotator ID first (at the top).")
    if "item_id" not in state:
        return _keep(state, "vote", "There is no item on screen to vote on.")
    item = next(it for it in services.items if it.item_id == state["item_id"])
    if state.get("voted"):
        return _hold(item, state, "This item is saved already. Press **Next item**.")
    choice = CHOICE_LABELS.get(choice_label) if isinstance(choice_label, str) else None
    if choice is None:
        return _keep(state, "vote", "Pick A, B, tie or both bad first (the ratings are optional).")
    try:
        values = dict(
            zip(
                [f"{side}_{c}" for side in ("left", "right") for c in CRITERIA],
                [_rating(r) for r in ratings],
            )
        )
    except ValueError as exc:
        return _keep(state, "vote", f"Vote not saved: {exc}")
    left, right = state["left"], state["right"]
    prov = {side: item.stories[s].get("provenance", {}) for side, s in (("l", left), ("r", right))}
    try:
        services.store.append(
            Vote(
                annotator=state["annotator"],
                item_id=item.item_id,
                system_left=left,
                system_right=right,
                choice=choice,
                comment="" if comment is None else comment,
                seed_left=prov["l"].get("sampling", {}).get("seed"),
                seed_right=prov["r"].get("sampling", {}).get("seed"),
                settings=settings_json(
                    prov["l"].get("sampling", {}), prov["r"].get("sampling", {})
                ),
                **values,
            )
        )
    except DuplicateVote:  # a second tab, or a double click: the first vote stands
        return _hold(
            item,
            {**state, "voted": True},
            "You had already rated this item; your first vote stands. Press **Next item**.",
        )
    except VoteError as exc:
        return _keep(state, "vote", f"Vote not saved: {exc}")
    reveal = (
        f"**Saved.** Story **A** was written by `{left}`, story **B** by `{right}`. "
        "Press **Next item** for another."
    )
    return _hold(item, {**state, "voted": True}, reveal)


def _rating(r) -> int | None:
    """A 1-5 rating from the page ("1".."5"), or None when left out."""
    if r is None or r == "":
        return None
    if str(r) not in ("1", "2", "3", "4", "5"):
        raise ValueError(f"a rating must be 1 to 5 or left out, not {str(r)[:20]!r}")
    return int(r)


def gr_skip():
    import gradio as gr

    return gr.skip()
