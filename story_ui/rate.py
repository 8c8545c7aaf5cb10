"""Rate tab handlers: a study's blind A/B judging. Who the annotator is comes from the server
(an invite code, a signed-in Hugging Face profile, a browser-scoped id, or on one's own machine
a typed name); which item they get, and on which side each system is, from the study's
assigner; which system wrote which story stays in the server-side session state, and is shown
only as the study's ``reveal`` setting allows."""

from __future__ import annotations

import hmac
import secrets
import time

from human_ratings.identity import IdentityError, oauth_annotator, profile_orgs
from human_ratings.pairs import Item
from human_ratings.store import (
    CRITERIA,
    DuplicateVote,
    Vote,
    VoteError,
    receipt,
    settings_json,
)
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
SIGN_IN = {
    "invite": "Enter the invite code you were given, then Start.",
    "oauth": "Sign in with Hugging Face (the button above), then Start.",
    "open": "Press Start: you vote anonymously (your browser keeps a random id).",
    "local": "Enter your annotator ID, then Start.",
}


def request_markdown(item: Item) -> str:
    rows = "\n".join(f"- **{k}**: {v}" for k, v in request_fields(item.request).items())
    return f"**The request**\n\n{rows}"


# Every handler returns (request, story A, story B, state, shown, start message, vote message).
# The messages appear beside the control that caused them. ``shown`` changes only when a new
# item (or none) replaces the one on screen, and only then is the answer form cleared: a refused
# Start or a refused vote leaves everything the annotator typed in place.


def _say(request, a, b, state, where: str, message: str, shown=None):
    start_msg, vote_msg = (message, "") if where == "start" else ("", message)
    return request, a, b, state, gr_skip() if shown is None else shown, start_msg, vote_msg


def _keep(state, where: str, message: str):
    """Leave the screen as it is, and say something beside the control that was used."""
    skip = gr_skip()
    return _say(skip, skip, skip, state, where, message)


def _show_item(item: Item, left: str, right: str) -> tuple[str, str, str]:
    return request_markdown(item), item.stories[left]["text"], item.stories[right]["text"]


def identify(services, credential, password, profile, visitor: str) -> dict:
    """The annotator behind a sign-in, as the study's access says; :class:`IdentityError`
    with a message for the person otherwise."""
    study = services.study
    access = study.config.access
    if access == "oauth":
        return {"annotator": oauth_annotator(profile, study.config.allow), "via": "oauth"}
    if access == "open":
        return {"annotator": f"anon:{visitor}", "via": "open"}
    if access == "invite":
        invite = study.invites.sign_in(credential)
        return {"annotator": invite.annotator, "via": "invite", "code": invite.sha256}
    if not isinstance(credential, str) or not isinstance(password, (str, type(None))):
        raise IdentityError("the annotator ID and password must be text")
    name = credential.strip()
    if not name or len(name) > 64 or not name.isprintable():
        raise IdentityError("Enter an annotator ID (up to 64 printable characters).")
    expected = study.password
    if expected and not hmac.compare_digest((password or "").encode(), expected.encode()):
        raise IdentityError("Wrong password.")
    return {"annotator": name, "via": "local"}


def start(services, credential, password, state=None, profile=None, visitor: str = ""):
    """Sign in and show the first item; a refusal leaves the item on screen, if any, and the
    answers typed for it. Failed sign-ins are rate-limited per visitor."""
    state = state or {}
    if services.study is None:
        return _keep(state, "start", "No study is running on this app.")
    wait = services.signin_limit.wait(visitor or "?")
    if wait:
        return _keep(state, "start", f"Too many failed sign-ins: try again in {wait:.0f} s.")
    try:
        who = identify(services, credential, password, profile, visitor)
    except IdentityError as exc:
        services.signin_limit.hit(visitor or "?")
        return _keep(state, "start", str(exc))
    if state.get("annotator") and state["annotator"] != who["annotator"] and state.get("item_id"):
        services.study.assigner.skip(state["annotator"])  # a new person at this screen
    wait = services.assign_limit.hit(who["annotator"])
    if wait:
        return _keep(state, "start", f"Too many items asked for: try again in {wait:.0f} s.")
    note = "Read the guidelines above before your first item; they stay there to reread."
    return show(services, {**who}, note, where="start")


def show(services, state: dict, note: str = "", where: str = "vote"):
    """The annotator's next item (the one they hold, if any); ``note`` goes beside Start
    (``where="start"``) or Submit."""
    study = services.study
    annotator = state["annotator"]
    a = None if study.closed or study.complete() else study.assigner.next(annotator)
    if a is None and not study.closed and study.config.live:
        item = services.live_item()  # a live study: a new item, made now
        study.add_item(item)
        a = study.assigner.next(annotator)
    keep = {k: state[k] for k in ("annotator", "via", "code") if k in state}
    if a is None:
        msg = (
            "This study is closed. Thank you!"
            if study.closed
            else "Nothing needs your vote now: every item you may rate has its votes. Thank you!"
        )
        note = (note + "\n\n" + msg).strip()
        # Only what cannot be undone: a closed study, or an annotator no item can come to (a
        # study "decided" now may be undecided by the next vote; a live one makes new items).
        final = study.closed or (not study.config.live and study.assigner.finished(annotator))
        if study.config.reveal == "end" and final:
            note = (note + "\n\n" + study.revealed(annotator)).strip()  # nothing left to bias
        return _say(*EMPTY, keep, where, note, shown=secrets.token_hex(8))
    item = study.by_id[a.item_id]
    state = {**keep, "item_id": a.item_id, "left": a.left, "right": a.right}
    note = (note + "\n\n" + "Read both stories, then vote.").strip()
    return _say(*_show_item(item, a.left, a.right), state, where, note, shown=secrets.token_hex(8))


def _signed_in(services, state, profile) -> str | None:
    """Why this request may not vote, or None. On a Hugging Face study the profile is checked
    again at every vote: the page's state alone is not proof of who is asking."""
    if not state or not state.get("annotator"):
        return "Sign in first (at the top)."
    if state.get("via") == "oauth":
        try:
            if oauth_annotator(profile, services.study.config.allow) != state["annotator"]:
                return "You are signed in as someone else now: press Start again."
        except IdentityError as exc:
            return str(exc)
    if state.get("via") == "invite":  # the code signed in with must still be theirs
        current = services.study.invites.annotators().get(state["annotator"])
        if current is None or current.revoked or current.sha256 != state.get("code"):
            return "Your invite code has been revoked or replaced; ask the study's owner."
    return None


def next_one(services, state: dict, profile=None):
    """ "Next item": a new item after a vote, or instead of the one on screen (which goes back
    to the others)."""
    why = _signed_in(services, state, profile)
    if why:
        return _keep(state or {}, "vote", why)
    wait = services.assign_limit.hit(state["annotator"])
    if wait:
        return _keep(state, "vote", f"Too many items asked for: try again in {wait:.0f} s.")
    if state.get("item_id") and not state.get("voted"):
        services.study.assigner.skip(state["annotator"])
    return show(services, state)


def vote(services, state: dict, choice_label, ratings: list, comment, profile=None):
    """Record the vote on the item the annotator was given; the item stays on screen (with the
    systems named if the study reveals them after each vote) until "Next item"."""
    study = services.study
    why = _signed_in(services, state, profile)
    if why:
        return _keep(state or {}, "vote", why)
    if "item_id" not in state:
        return _keep(state, "vote", "There is no item on screen to vote on.")
    item = study.by_id[state["item_id"]]
    if state.get("voted"):
        return _hold(item, state, "This item is saved already. Press **Next item**.")
    if study.closed:
        return _keep(state, "vote", "This study is closed: no more votes are taken.")
    choice = CHOICE_LABELS.get(choice_label) if isinstance(choice_label, str) else None
    if choice is None:
        return _keep(state, "vote", "Pick A, B, tie or both bad first (the ratings are optional).")
    try:
        values = dict(
            zip(
                [f"{side}_{c}" for side in ("left", "right") for c in CRITERIA],
                [_rating(r) for r in ratings],
                strict=True,
            )
        )
    except ValueError as exc:
        return _keep(state, "vote", f"Vote not saved: {exc}")
    annotator = state["annotator"]
    if item.item_id in study.store.rated_items(annotator):  # a second tab, or a double click
        study.assigner.voted(annotator, item.item_id)
        return _hold(
            item,
            {**state, "voted": True},
            "You had already rated this item; your first vote stands. Press **Next item**.",
        )
    held = study.assigner.held(annotator, item.item_id)
    if held is None:
        return _keep(
            state,
            "vote",
            "Vote not saved: this item is not yours to rate now (it was not given to you, or "
            "it was given back after a long wait). Press **Next item**.",
        )
    wait = services.vote_limit.hit(annotator)
    if wait:
        return _keep(state, "vote", f"Too many votes in a minute: try again in {wait:.0f} s.")
    left, right = held.left, held.right
    prov = {side: item.stories[s].get("provenance", {}) for side, s in (("l", left), ("r", right))}
    try:
        recorded = study.store.append(
            Vote(
                annotator=annotator,
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
                study=study.name,
                seconds=round(time.time() - held.at, 3),
                anonymous=state.get("via") == "open",
                **values,
            )
        )
    except DuplicateVote:  # a second tab, or a double click: the first vote stands
        study.assigner.voted(annotator, item.item_id)
        return _hold(
            item,
            {**state, "voted": True},
            "You had already rated this item; your first vote stands. Press **Next item**.",
        )
    except VoteError as exc:
        return _keep(state, "vote", f"Vote not saved: {exc}")
    study.assigner.voted(annotator, item.item_id)
    if services.mirror is not None:
        services.mirror.add("votes", recorded)
    saved = f"**Saved** (receipt `{receipt(study.key, annotator, item.item_id)}`)."
    if study.config.reveal == "each":  # gold items too: else no reveal would give them away
        saved += f" Story **A** was written by `{left}`, story **B** by `{right}`."
    return _hold(item, {**state, "voted": True}, saved + " Press **Next item** for another.")


def _hold(item: Item, state: dict, message: str):
    """The item voted on, held on screen (and sent to API clients) with the message."""
    return _say(*_show_item(item, state["left"], state["right"]), state, "vote", message)


def _rating(r) -> int | None:
    """A 1-5 rating from the page ("1".."5"), or None when left out."""
    if r is None or r == "":
        return None
    if str(r) not in ("1", "2", "3", "4", "5"):
        raise ValueError(f"a rating must be 1 to 5 or left out, not {str(r)[:20]!r}")
    return int(r)


def is_owner(services, state, profile) -> bool:
    """Whether this visitor may see the study's progress and results: signed in with an
    owner's invite code, signed in with Hugging Face as an owner (or the Space's), or on
    one's own machine (a local study)."""
    study = services.study
    if study is None:
        return True
    if study.config.access == "local":
        return True
    if (state or {}).get("via") == "invite" and not _signed_in(services, state, profile):
        invite = study.invites.annotators().get(state["annotator"])  # the role as it is now
        if invite is not None and invite.role == "owner":
            return True
    username = getattr(profile, "username", None)
    if not username:
        return False
    # The Space's author may be an organisation: its members own the Space, and the study.
    orgs = profile_orgs(profile)
    owners = set(study.config.owners)
    return (
        username in owners
        or bool(services.space_owner)
        and (username == services.space_owner or services.space_owner in orgs)
    )


def gr_skip():
    import gradio as gr

    return gr.skip()
