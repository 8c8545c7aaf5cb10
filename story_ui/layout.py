"""The whole app: the Write, Rate and Results tabs (``story_ui/tabs/``), wired to the services."""

from __future__ import annotations

import secrets

import gradio as gr

from story_ui.services import Services
from story_ui.tabs import rate, results, study, write

INTRO = """# Story studio
Describe the story you want — characters, setting, genre, tone, events, ending — and a
fine-tuned language model writes it. Annotators: the **Rate** tab compares two systems blind."""


def visitor_id(kept: str) -> tuple[str, str]:
    """The visitor's id, kept in their browser: made on their first visit."""
    kept = kept if isinstance(kept, str) and 8 <= len(kept) <= 64 else secrets.token_hex(8)
    return kept, kept


def build_app(services: Services) -> gr.Blocks:
    """The whole app; nothing in it is shared between users but the read-only services."""
    with gr.Blocks(title="Story studio", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("Write"):
            write.build(services)
        # Who is rating (server-side, per visit), shared by the tabs that check it; and the
        # visitor's random id, kept in their browser (open studies).
        rater = gr.State({})
        browser = gr.BrowserState(
            "", storage_key="storygen-visitor", secret=services.browser_secret
        )
        visitor = gr.State("")
        demo.load(visitor_id, browser, [browser, visitor], api_visibility="private")
        with gr.Tab("Rate"):
            rate.build(services, rater, visitor)
        with gr.Tab("Study"):
            study.build(services, rater)
        with gr.Tab("Results"):
            results.build(services, rater)
    demo.queue(default_concurrency_limit=services.config.concurrency)
    return demo
