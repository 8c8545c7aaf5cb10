"""The whole app: the Write, Rate and Results tabs (``story_ui/tabs/``), wired to the services."""

from __future__ import annotations

import gradio as gr

from story_ui.services import Services
from story_ui.tabs import rate, results, write

INTRO = """# Story studio
Describe the story you want — characters, setting, genre, tone, events, ending — and a
fine-tuned language model writes it. Annotators: the **Rate** tab compares two systems blind."""


def build_app(services: Services) -> gr.Blocks:
    """The whole app; nothing in it is shared between users but the read-only services."""
    with gr.Blocks(title="Story studio", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Write"):
            write.build(services)
        with gr.Tab("Rate"):
            rate.build(services)
        with gr.Tab("Results"):
            results.build(services)
    demo.queue(default_concurrency_limit=services.config.concurrency)
    return demo
