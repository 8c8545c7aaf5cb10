"""The Rate tab: blind A/B judging of two stories written for the same request."""

from __future__ import annotations

import inspect

import gradio as gr

from human_ratings.store import CRITERIA
from story_ui import rate
from story_ui.services import Services


def build(services: Services) -> None:
    """The tab's layout and wiring."""
    gr.Markdown(
        "Compare two stories written for the same request. Which system wrote which is hidden "
        "until you vote. **Required:** which story is better. **Optional:** the 1-5 ratings "
        f"({rate.SCALE.split(';')[0]}) and a comment."
    )
    with gr.Row(equal_height=True):
        annotator = gr.Textbox(label="Annotator ID", max_length=64, elem_id="annotator")
        password = gr.Textbox(
            label="Password",
            type="password",
            visible=bool(services.config.rater_password),
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
    state = gr.State({})
    item_shown = gr.State("")  # changes when a new item (or none) replaces the one on screen
    shown = [request_md, stories[0], stories[1], state, item_shown, start_status, status]
    answers = [choice, comment, *ratings.values()]

    def start_rating(annotator_id, password, state):
        return rate.start(services, annotator_id, password, state)

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
    ):
        given = locals()
        return rate.vote(services, state, choice, [given[k] for k in ratings], comment)

    # The vote's parameters are the rating controls, by name.
    assert list(ratings) == list(inspect.signature(cast_vote).parameters)[3:]

    def next_item(state):
        return rate.next_one(services, state)

    def clear():
        return None, "", *([None] * len(ratings))

    # A new item comes with a clean form; a vote, or a refusal, leaves the answers in place.
    item_shown.change(clear, None, answers, api_visibility="private")
    begin.click(start_rating, [annotator, password, state], shown, api_name="start_rating")
    submit.click(cast_vote, [state, *answers], shown, api_name="vote")
    next_btn.click(next_item, state, shown, api_name="next_item")
