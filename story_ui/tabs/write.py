"""The Write tab: the request form, the story as it is written, plans, drafts, downloads and
readers' reactions."""

from __future__ import annotations

import hashlib

import gradio as gr

from story_ui import write
from story_ui.components import Number, Slider, Textbox
from story_ui.forms import SamplingForm, named_handler
from story_ui.services import Services
from storygen.best_of import MAX_ATTEMPTS
from storygen.config import SamplingConfig
from storygen.request import ARCS, ENDINGS, GENRES, LENGTHS, POVS, TONES

PRIVATE = dict(queue=False, api_visibility="private")
"""Page-only events: no queue, no API endpoint."""


def _any(choices) -> list[tuple[str, str]]:
    """Dropdown choices with the empty one shown as "any" (its value stays "")."""
    return [("any", ""), *((c, c) for c in choices)]


def story_form() -> dict[str, gr.Component]:
    """The request's controls, by :class:`~story_ui.forms.StoryForm` field name."""
    c: dict[str, gr.Component] = {}
    c["characters"] = Textbox(
        label="Characters (one per line: Name: trait, trait)",
        lines=3,
        placeholder="Mara: stubborn, kind\nJonah: curious",
        elem_id="characters",
    )
    with gr.Row():
        c["place"] = Textbox(label="Place", placeholder="a lighthouse", elem_id="place")
        c["era"] = Textbox(label="Era", placeholder="the 1920s", elem_id="era")
    with gr.Row():
        c["genre"] = gr.Dropdown(_any(GENRES), value="", label="Genre", elem_id="genre")
        c["tone"] = gr.Dropdown(_any(TONES), value="", label="Tone", elem_id="tone")
    c["plot_points"] = Textbox(
        label="Events that must happen (one per line)", lines=2, elem_id="plot"
    )
    with gr.Row():
        c["ending"] = gr.Dropdown(_any(ENDINGS), value="", label="Ending", elem_id="ending")
        c["pov"] = gr.Dropdown(_any(POVS), value="", label="Point of view", elem_id="pov")
    with gr.Row():
        c["arc"] = gr.Dropdown(
            [("any", ""), *((f"{k} ({v})", k) for k, v in ARCS.items())],
            value="",
            label="Arc (how the hero's fortune moves)",
            elem_id="arc",
        )
        c["length"] = gr.Radio(list(LENGTHS), value="short", label="Length", elem_id="length")
    c["prompt"] = Textbox(label="Anything else (free text)", lines=2, elem_id="prompt")
    # The order Gradio passes them in is StoryForm's.
    order = ["characters", "place", "era", "genre", "tone", "plot_points", "ending", "pov"]
    return {k: c[k] for k in [*order, "length", "prompt", "arc"]}


def sampling_form() -> dict[str, gr.Component]:
    """The decoding controls, by :class:`~story_ui.forms.SamplingForm` field name; ranges from
    SamplingConfig itself, so that the page and validation agree."""
    d, r = SamplingForm(), SamplingConfig.RANGES
    c: dict[str, gr.Component] = {}
    with gr.Accordion("Advanced sampling", open=False):
        c["temperature"] = Slider(
            *r["temperature"], value=d.temperature, step=0.05, label="Temperature"
        )
        c["top_p"] = Slider(*r["top_p"], value=d.top_p, step=0.01, label="Top-p")
        c["top_k"] = Slider(*r["top_k"], value=d.top_k, step=1, label="Top-k (0: off)")
        c["repetition_penalty"] = Slider(
            *r["repetition_penalty"],
            value=d.repetition_penalty,
            step=0.01,
            label="Repetition penalty",
        )
        c["max_new_tokens"] = Slider(
            0,
            r["max_new_tokens"][1],
            value=0,
            step=16,
            label="Max new tokens (0: from the length)",
        )
    with gr.Row():
        c["seed"] = Number(value=d.seed, label="Seed", precision=0, elem_id="seed")
        c["randomize"] = gr.Checkbox(value=False, label="New random seed each time")
    c["attempts"] = Slider(
        1,
        MAX_ATTEMPTS,
        value=1,
        step=1,
        label="Attempts: write this many, keep the one the judges find follows the request best",
        elem_id="attempts",
    )
    return c


def build(services: Services) -> None:
    """The tab's layout and wiring."""
    with gr.Row():
        with gr.Column(scale=2):
            form = {**story_form(), **sampling_form()}
        with gr.Column(scale=3):
            with gr.Row():
                go = gr.Button("Write", variant="primary", elem_id="write-btn")
                # Offered only while a story is being written.
                stop = gr.Button("Stop", variant="stop", visible=False, elem_id="stop-btn")
                regen = gr.Button("Regenerate (new seed)", elem_id="regen-btn")
                cont = gr.Button("Continue", elem_id="continue-btn")
            plan = plan_section()
            story = Textbox(label="Story", lines=18, interactive=False, elem_id="story")
            status = gr.Markdown(elem_id="write-status")
            download = download_section()
            reactions = reaction_section()
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
    inputs = list(form.values())
    outputs = [story, status, form["seed"], drafts, provenance]

    # Stop is offered only while a story is written: shown first, hidden when it ends. (A
    # second listener on the same click does not run while the first streams, so it is chained.)
    def show_stop():
        # Reset as well as show: a late "Stopping…" from the last story may still be on it.
        return gr.Button("Stop", visible=True, interactive=True)

    def hide_stop():
        return gr.Button(visible=False)

    def writing(button, handler, extra, api_name, outs, then_drafts=True):
        event = button.click(show_stop, None, stop, **PRIVATE).then(
            named_handler(handler, [e for e, _ in extra], stream=True),
            inputs + [c for _, c in extra],
            outs,
            api_name=api_name,
            concurrency_id="gen",
        )
        if then_drafts:
            event = event.then(write.drafts_table, drafts, drafts_view, api_visibility="private")
        event.then(hide_stop, None, stop, **PRIVATE)

    def write_story(form, sampling, story, drafts, provenance, session):
        yield from write.write(services, form, sampling, drafts, session=session)

    def regenerate(form, sampling, story, drafts, provenance, session):
        # Regenerate and Continue keep the plan the story on screen was written from.
        same = write.plan_of(provenance)
        yield from write.write(
            services, form, sampling, drafts, session=session, same_plan=same, new_seed=True
        )

    def continue_story(form, sampling, story, drafts, provenance, session):
        same = write.plan_of(provenance)
        yield from write.write(
            services, form, sampling, drafts, story, session=session, same_plan=same
        )

    story_inputs = [("story", story), ("drafts", drafts), ("provenance", provenance)]
    writing(go, write_story, story_inputs, "write", outputs)
    writing(regen, regenerate, story_inputs, "regenerate", outputs)
    writing(cont, continue_story, story_inputs, "continue", outputs)

    def make_plan(form, sampling, plan, model_plan, session):
        yield from write.make_plan(services, form, sampling, model_plan, session, plan_now=plan)

    def write_from_plan(form, sampling, plan, drafts, model_plan, session):
        yield from write.write(
            services,
            form,
            sampling,
            drafts,
            session=session,
            plan_text=plan,
            model_plan=model_plan,
        )

    plan_outputs = [plan["box"], plan["status"], form["seed"], model_plan]
    writing(
        plan["plan"],
        make_plan,
        [("plan", plan["box"]), ("model_plan", model_plan)],
        "plan",
        plan_outputs,
        then_drafts=False,
    )
    writing(
        plan["write"],
        write_from_plan,
        [("plan", plan["box"]), ("drafts", drafts), ("model_plan", model_plan)],
        "write_from_plan",
        outputs,
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

    def download_story(story, file_format, drafts):
        return write.export(story, file_format, drafts)

    download["button"].click(
        download_story,
        [story, download["format"], drafts],
        [download["file"], download["status"]],
        api_name="download",
    )

    def open_draft(draft_number, drafts):
        return write.open_draft(draft_number, drafts)

    restore.click(
        open_draft, [pick, drafts], [story, draft_status, provenance], api_name="open_draft"
    )

    # One handler for the three reactions; each button names its kind. The story reacted to
    # is the server's copy (the draft whose provenance is on screen), never text a client sends.
    def reaction(kind: str):
        def handler(provenance, drafts, edited, request: gr.Request):
            visitor = hashlib.sha256(request.session_hash.encode()).hexdigest()[:16]
            return write.react(services, kind, provenance, drafts, edited, visitor)

        return handler

    status_md = reactions["status"]
    empty = gr.State("")
    for kind, api_name in (("up", "thumbs_up"), ("down", "thumbs_down")):
        reactions[kind].click(
            reaction(kind), [provenance, drafts, empty], status_md, api_name=api_name
        )
    reactions["start_edit"].click(lambda story: story, story, reactions["edit_box"], **PRIVATE)
    edited = [provenance, drafts, reactions["edit_box"]]
    reactions["save_edit"].click(reaction("edit"), edited, status_md, api_name="save_edit")


def plan_section() -> dict[str, gr.Component]:
    with gr.Accordion("Plan first (optional)", open=False, elem_id="plan-section"):
        gr.Markdown(
            "The model writes a premise and five beats (exposition, rising action, climax, "
            "falling action, resolution). Change, add or remove beats, one a line, or write "
            "your own; the story then follows them in order."
        )
        with gr.Row():
            plan = gr.Button("Plan first", elem_id="plan-btn")
            write_btn = gr.Button("Write from plan", variant="primary", elem_id="write-plan-btn")
        box = gr.Textbox(
            label="Plan (one beat a line; a first line 'Premise: ...' is optional)",
            lines=7,
            interactive=True,
            elem_id="plan",
        )
        status = gr.Markdown(elem_id="plan-status")
    return {"plan": plan, "write": write_btn, "box": box, "status": status}


def download_section() -> dict[str, gr.Component]:
    with gr.Row(equal_height=True):
        fmt = gr.Radio(["Markdown", "Text"], value="Markdown", label="Download as")
        with gr.Column():
            button = gr.Button("Download")
            status = gr.Markdown(elem_id="download-status")
    file = gr.File(label="Your story", interactive=False)
    return {"format": fmt, "button": button, "status": status, "file": file}


def reaction_section() -> dict[str, gr.Component]:
    with gr.Accordion("Your reaction (optional, anonymous)", open=False):
        gr.Markdown(
            "Tell us what you thought of the finished story, or fix it: reactions are kept "
            "with what made the story and may be used to tune the model."
        )
        with gr.Row():
            up = gr.Button("👍 Good story", elem_id="thumbs-up")
            down = gr.Button("👎 Not good", elem_id="thumbs-down")
            start_edit = gr.Button("Edit the story", elem_id="start-edit")
        edit_box = gr.Textbox(label="Your version of the story", lines=10, elem_id="edit-box")
        save_edit = gr.Button("Save my edit", elem_id="save-edit")
        status = gr.Markdown(elem_id="reaction-status")
    return {
        "up": up,
        "down": down,
        "start_edit": start_edit,
        "edit_box": edit_box,
        "save_edit": save_edit,
        "status": status,
    }
