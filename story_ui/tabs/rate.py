"""The Rate tab: a study's blind A/B judging of two stories written for the same request."""

from __future__ import annotations

import hashlib
import inspect

import gradio as gr

from human_ratings.store import CRITERIA
from story_ui import rate
from story_ui.services import Services


def build(services: Services, rater: gr.State, visitor: gr.State) -> None:
    """The tab's layout and wiring. ``rater`` is the signed-in annotator (server-side, per
    session), shared with the Study and Results tabs; ``visitor`` the visitor's browser-scoped
    id (empty for an API client, which is then known by its session)."""
    study = services.study
    if study is None:
        gr.Markdown("No study is running on this app: start it with `--study FOLDER`.")
        return
    access = study.config.access
    with gr.Accordion("Guidelines (read them before your first item)", open=True):
        gr.Markdown(study.guidelines(), elem_id="guidelines")
    gr.Markdown(
        f"{rate.SIGN_IN[access]} Which system wrote which story is hidden. **Required:** which "
        f"story is better. **Optional:** the 1-5 ratings ({rate.SCALE.split(';')[0]}) and a "
        "comment."
    )
    with gr.Row(equal_height=True):
        if access == "oauth":
            gr.LoginButton()
        credential = gr.Textbox(
            label={"invite": "Invite code", "local": "Annotator ID"}.get(access, ""),
            type="password" if access == "invite" else "text",
            max_length=100,
            visible=access in ("invite", "local"),
            elem_id="annotator",
        )
        password = gr.Textbox(
            label="Password",
            type="password",
            visible=access == "local" and bool(study.password),
            elem_id="password",
        )
        with gr.Column():
            begin = gr.Button("Start rating", variant="primary", elem_id="start-rating")
            start_status = gr.Markdown(elem_id="start-status")
    request_md = gr.Markdown(elem_id="rate-request")
    scale = [("1 (poor)", "1"), ("2", "2"), ("3", "3"), ("4", "4"), ("5 (excellent)", "5")]
    ratings = {}
    stories = []
    with gr.Row():
        for side in ("A", "B"):
            with gr.Column():
                stories.append(
                    gr.Textbox(
                        label=f"Story {side}",
                        lines=14,
                        interactive=False,
                        elem_id=f"story-{side.lower()}",
                    )
                )
                for c in CRITERIA:
                    ratings[f"{side.lower()}_{c}"] = gr.Radio(
                        scale,
                        label=f"{side}: {c}",
                        info=rate.SCALE,
                        elem_id=f"rate-{side.lower()}-{c}",
                    )
    choice = gr.Radio(
        list(rate.CHOICE_LABELS), label="Which story is better? (required)", elem_id="choice"
    )
    comment = gr.Textbox(label="Comment (optional)", max_length=5000, elem_id="comment")
    with gr.Row(equal_height=True):
        submit = gr.Button("Submit vote", variant="primary", elem_id="submit-vote")
        next_btn = gr.Button("Next item", elem_id="next-item")
    status = gr.Markdown(elem_id="rate-status")
    item_shown = gr.State("")  # changes when a new item (or none) replaces the one on screen
    shown = [request_md, stories[0], stories[1], rater, item_shown, start_status, status]
    answers = [choice, comment, *ratings.values()]

    def start_rating(
        credential,
        password,
        state,
        browser_id,
        request: gr.Request,
        profile: gr.OAuthProfile | None = None,
    ):
        # Open studies vote under the browser's random id; a client without one (an API
        # client) is known by its session.
        who = browser_id or hashlib.sha256(request.session_hash.encode()).hexdigest()[:16]
        return rate.start(services, credential, password, state, profile, who)

    def cast_vote(
        state,
        choice,
        comment,
        a_coherence,
        a_engagement,
        a_relevance,
        a_personalization,
        b_coherence,
        b_engagement,
        b_relevance,
        b_personalization,
        profile: gr.OAuthProfile | None = None,
    ):
        given = locals()
        marks = [given[k] for k in ratings]
        return rate.vote(services, state, choice, marks, comment, profile)

    # The vote's parameters are the rating controls, by name.
    assert list(ratings) == list(inspect.signature(cast_vote).parameters)[3:11]

    def next_item(state, profile: gr.OAuthProfile | None = None):
        return rate.next_one(services, state, profile)

    def clear():
        return None, "", *([None] * len(ratings))

    # A new item comes with a clean form; a vote, or a refusal, leaves the answers in place.
    item_shown.change(clear, None, answers, api_visibility="private")
    begin.click(
        start_rating,
        [credential, password, rater, visitor],
        shown,
        api_name="start_rating",
    )
    submit.click(cast_vote, [rater, *answers], shown, api_name="vote")
    next_btn.click(next_item, rater, shown, api_name="next_item")
