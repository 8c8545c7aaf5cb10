"""The Blocks layout: Write, Rate and Results tabs, wired to the thin handlers."""

from __future__ import annotations

import inspect

import gradio as gr

from human_ratings.report import figure, markdown
from human_ratings.stats import summary
from human_ratings.store import CRITERIA
from story_ui import rate, write
from story_ui.components import Number, Slider
from story_ui.services import Services
from storygen.config import SamplingConfig
from storygen.request import ARCS, ENDINGS, GENRES, LENGTHS, POVS, TONES

INTRO = """# Story studio
Describe the story you want — characters, setting, genre, tone, events, ending — and a
fine-tuned language model writes it. Annotators: the **Rate** tab compares two systems blind."""


def _any(choices) -> list[tuple[str, str]]:
    """Dropdown choices with the empty one shown as "any" (its value stays "")."""
    return [("any", ""), *((c, c) for c in choices)]


def write_tab(services: Services) -> None:
    d = SamplingConfig()
    with gr.Row():
        with gr.Column(scale=2):
            characters = gr.Textbox(
                label="Characters (one per line: Name: trait, trait)",
                lines=3,
                placeholder="Mara: stubborn, kind\nJonah: curious",
                elem_id="characters",
            )
            with gr.Row():
                place = gr.Textbox(label="Place", placeholder="a lighthouse", elem_id="place")
                era = gr.Textbox(label="Era", placeholder="the 1920s", elem_id="era")
            with gr.Row():
                genre = gr.Dropdown(_any(GENRES), value="", label="Genre", elem_id="genre")
                tone = gr.Dropdown(_any(TONES), value="", label="Tone", elem_id="tone")
            plot = gr.Textbox(
                label="Events that must happen (one per line)", lines=2, elem_id="plot"
            )
            with gr.Row():
                ending = gr.Dropdown(_any(ENDINGS), value="", label="Ending", elem_id="ending")
                pov = gr.Dropdown(_any(POVS), value="", label="Point of view", elem_id="pov")
            with gr.Row():
                arc = gr.Dropdown(
                    [("any", ""), *((f"{k} ({v})", k) for k, v in ARCS.items())],
                    value="",
                    label="Arc (how the hero's fortune moves)",
                    elem_id="arc",
                )
                length = gr.Radio(list(LENGTHS), value="short", label="Length", elem_id="length")
            prompt = gr.Textbox(label="Anything else (free text)", lines=2, elem_id="prompt")
            with gr.Accordion("Advanced sampling", open=False):
                # Ranges from SamplingConfig itself, so the page and validation agree.
                r = SamplingConfig.RANGES
                temperature = Slider(
                    *r["temperature"], value=d.temperature, step=0.05, label="Temperature"
                )
                top_p = Slider(*r["top_p"], value=d.top_p, step=0.01, label="Top-p")
                top_k = Slider(*r["top_k"], value=d.top_k, step=1, label="Top-k (0: off)")
                rep = Slider(
                    *r["repetition_penalty"],
                    value=d.repetition_penalty,
                    step=0.01,
                    label="Repetition penalty",
                )
                max_new = Slider(
                    0,
                    r["max_new_tokens"][1],
                    value=0,
                    step=16,
                    label="Max new tokens (0: from the length)",
                )
            with gr.Row():
                seed = Number(value=d.seed, label="Seed", precision=0, elem_id="seed")
                randomize = gr.Checkbox(value=False, label="New random seed each time")
        with gr.Column(scale=3):
            with gr.Row():
                go = gr.Button("Write", variant="primary", elem_id="write-btn")
                # Offered only while a story is being written.
                stop = gr.Button("Stop", variant="stop", visible=False, elem_id="stop-btn")
                regen = gr.Button("Regenerate (new seed)", elem_id="regen-btn")
                cont = gr.Button("Continue", elem_id="continue-btn")
            with gr.Accordion("Plan first (optional)", open=False, elem_id="plan-section"):
                gr.Markdown(
                    "The model writes a premise and five beats (exposition, rising action, "
                    "climax, falling action, resolution). Change, add or remove beats, one a "
                    "line, or write your own; the story then follows them in order."
                )
                with gr.Row():
                    plan_btn = gr.Button("Plan first", elem_id="plan-btn")
                    from_plan = gr.Button(
                        "Write from plan", variant="primary", elem_id="write-plan-btn"
                    )
                plan_box = gr.Textbox(
                    label="Plan (one beat a line; a first line 'Premise: ...' is optional)",
                    lines=7,
                    interactive=True,
                    elem_id="plan",
                )
                plan_status = gr.Markdown(elem_id="plan-status")
            story = gr.Textbox(label="Story", lines=18, interactive=False, elem_id="story")
            status = gr.Markdown(elem_id="write-status")
            with gr.Row(equal_height=True):
                fmt = gr.Radio(["Markdown", "Text"], value="Markdown", label="Download as")
                with gr.Column():
                    dl = gr.Button("Download")
                    dl_status = gr.Markdown(elem_id="download-status")
            file = gr.File(label="Your story", interactive=False)
            with gr.Accordion("Your reaction (optional, anonymous)", open=False):
                gr.Markdown(
                    "Tell us what you thought of the finished story, or fix it: reactions are "
                    "kept with what made the story and may be used to tune the model."
                )
                with gr.Row():
                    thumbs_up = gr.Button("👍 Good story", elem_id="thumbs-up")
                    thumbs_down = gr.Button("👎 Not good", elem_id="thumbs-down")
                    start_edit = gr.Button("Edit the story", elem_id="start-edit")
                edit_box = gr.Textbox(
                    label="Your version of the story", lines=10, elem_id="edit-box"
                )
                save_edit = gr.Button("Save my edit", elem_id="save-edit")
                reaction_status = gr.Markdown(elem_id="reaction-status")
            drafts_view = gr.Dataframe(
                headers=["#", "title", "seed", "words"],
                label="Drafts of this visit",
                interactive=False,
            )
            with gr.Row(equal_height=True):
                pick = Number(value=1, precision=0, label="Draft #")
                with gr.Column():
                    restore = gr.Button("Open draft")
                    draft_status = gr.Markdown(elem_id="draft-status")
    drafts = gr.State([])
    provenance = gr.State(None)
    model_plan = gr.State(None)  # the plan as the model wrote it, to tell an edited one
    form = [characters, place, era, genre, tone, plot, ending, pov, length, prompt, arc]
    settings = [temperature, top_p, top_k, rep, max_new]

    def form_dict(values: dict) -> dict:
        keys = ("characters", "place", "era", "genre", "tone", "plot_points", "ending", "pov")
        return {k: values[k] for k in (*keys, "length", "prompt", "arc")}

    def sampling_dict(values: dict) -> dict:
        keys = ("temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")
        return {k: values[k] for k in keys}

    def run(new_seed: bool, from_story: bool):
        # Named parameters (in the order of ``inputs`` below): gradio_client users see these
        # names, and Gradio passes the visitor's request, whose session Stop is aimed at.
        def handler(
            characters,
            place,
            era,
            genre,
            tone,
            plot_points,
            ending,
            pov,
            length,
            prompt,
            arc,
            temperature,
            top_p,
            top_k,
            repetition_penalty,
            max_new_tokens,
            seed,
            randomize,
            story,
            drafts,
            provenance,
            request: gr.Request,
        ):
            values = locals()
            yield from write.write(
                services,
                form_dict(values),
                sampling_dict(values),
                0 if seed is None else seed,
                randomize or new_seed,
                story if from_story else "",
                drafts,
                request.session_hash,
                # Regenerate and Continue keep the plan the story on screen was written from.
                same_plan=write.plan_of(provenance) if (new_seed or from_story) else None,
            )

        return handler

    def write_from_plan(
        characters,
        place,
        era,
        genre,
        tone,
        plot_points,
        ending,
        pov,
        length,
        prompt,
        arc,
        temperature,
        top_p,
        top_k,
        repetition_penalty,
        max_new_tokens,
        seed,
        randomize,
        plan,
        drafts,
        model_plan,
        request: gr.Request,
    ):
        values = locals()
        yield from write.write(
            services,
            form_dict(values),
            sampling_dict(values),
            0 if seed is None else seed,
            randomize,
            "",
            drafts,
            request.session_hash,
            plan_text=plan,
            model_plan=model_plan,
        )

    def make_plan(
        characters,
        place,
        era,
        genre,
        tone,
        plot_points,
        ending,
        pov,
        length,
        prompt,
        arc,
        temperature,
        top_p,
        top_k,
        repetition_penalty,
        max_new_tokens,
        seed,
        randomize,
        plan,
        model_plan,
        request: gr.Request,
    ):
        values = locals()
        yield from write.make_plan(
            services,
            form_dict(values),
            sampling_dict(values),
            0 if seed is None else seed,
            randomize,
            model_plan,
            request.session_hash,
            plan_now=plan,
        )

    inputs = [*form, *settings, seed, randomize, story, drafts, provenance]
    outputs = [story, status, seed, drafts, provenance]
    # Stop is offered only while a story is written: shown first, hidden when it ends. (A
    # second listener on the same click does not run while the first streams, so it is chained.)
    private = dict(queue=False, api_visibility="private")

    def show_stop():
        # Reset as well as show: a late "Stopping…" from the last story may still be on it.
        return gr.Button("Stop", visible=True, interactive=True)

    for button, api_name, new_seed, from_story in (
        (go, "write", False, False),
        (regen, "regenerate", True, False),
        (cont, "continue", False, True),
    ):
        button.click(show_stop, None, stop, **private).then(
            run(new_seed, from_story), inputs, outputs, api_name=api_name, concurrency_id="gen"
        ).then(write.drafts_table, drafts, drafts_view, api_visibility="private").then(
            lambda: gr.Button(visible=False), None, stop, **private
        )
    plan_inputs = [*form, *settings, seed, randomize, plan_box, model_plan]
    plan_btn.click(show_stop, None, stop, **private).then(
        make_plan,
        plan_inputs,
        [plan_box, plan_status, seed, model_plan],
        api_name="plan",
        concurrency_id="gen",
    ).then(lambda: gr.Button(visible=False), None, stop, **private)
    from_plan.click(show_stop, None, stop, **private).then(
        write_from_plan,
        [*form, *settings, seed, randomize, plan_box, drafts, model_plan],
        outputs,
        api_name="write_from_plan",
        concurrency_id="gen",
    ).then(write.drafts_table, drafts, drafts_view, api_visibility="private").then(
        lambda: gr.Button(visible=False), None, stop, **private
    )

    def stop_writing(request: gr.Request):
        # The story ends between two tokens and arrives cleaned, as a draft; its engine slot is
        # free at once (cancelling Gradio's task would leave the generator holding it). The
        # answer goes on the button, never the status line: it may arrive after the story's
        # own last status ("Stopped: …") and would overwrite it.
        if services.stop(request.session_hash):
            return gr.Button("Stopping…", interactive=False), "Stopping…"
        # Nothing to stop (yet: a story waiting for its turn has not started): Stop stays
        # usable, so that it can stop that story once it starts.
        gr.Info("Nothing is being written yet.")
        return gr.Button("Stop", interactive=True), "Nothing is being written."

    # The same answer for API clients, which get no value from a button.
    stop_answer = gr.Textbox(visible=False)
    stop.click(stop_writing, None, [stop, stop_answer], api_name="stop")

    def download(story, file_format, drafts):
        return write.export(story, file_format, drafts)

    dl.click(download, [story, fmt, drafts], [file, dl_status], api_name="download")

    def open_draft(draft_number, drafts):
        return write.open_draft(draft_number, drafts)

    restore.click(
        open_draft, [pick, drafts], [story, draft_status, provenance], api_name="open_draft"
    )

    # One handler for the three reactions; each button names its kind.
    def reaction(kind: str):
        def handler(story, provenance, edited=""):
            return write.react(services, kind, story, provenance, edited)

        return handler

    thumbs_up.click(reaction("up"), [story, provenance], reaction_status, api_name="thumbs_up")
    thumbs_down.click(
        reaction("down"), [story, provenance], reaction_status, api_name="thumbs_down"
    )
    start_edit.click(lambda story: story, story, edit_box, **private)
    save_edit.click(
        reaction("edit"), [story, provenance, edit_box], reaction_status, api_name="save_edit"
    )


def rate_tab(services: Services) -> None:
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


def reactions_markdown(counts: dict[str, dict[str, int]]) -> str:
    """Readers' reactions per system, as a Markdown table."""
    if not counts:
        return "No reactions from readers yet."
    lines = ["Readers' reactions:", "", "| system | 👍 | 👎 | edits |", "|---|---|---|---|"]
    lines += [f"| {s} | {c['up']} | {c['down']} | {c['edit']} |" for s, c in counts.items()]
    return "\n".join(lines)


def results_tab(services: Services) -> None:
    sync = gr.Markdown(services.sync_status)
    refresh = gr.Button("Refresh results", elem_id="refresh-results")
    table = gr.Markdown(elem_id="results")
    plot = gr.Plot(label="Win rates, Bradley-Terry and position bias")

    def show():
        votes = services.store.votes()
        reactions = reactions_markdown(services.reactions.counts())
        if not votes:
            return "No votes yet.\n\n" + reactions, None, services.sync_status
        s = summary(votes, bootstrap_rounds=100)
        return markdown(s) + "\n\n" + reactions, figure(s), services.sync_status

    refresh.click(show, None, [table, plot, sync], api_name="results")


def build_app(services: Services) -> gr.Blocks:
    """The whole app; nothing in it is shared between users but the read-only services."""
    with gr.Blocks(title="Story studio", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Write"):
            write_tab(services)
        with gr.Tab("Rate"):
            rate_tab(services)
        with gr.Tab("Results"):
            results_tab(services)
    demo.queue(default_concurrency_limit=services.config.concurrency)
    return demo
