"""The Results tab: win rates, the Bradley-Terry ranking, agreement, position bias and readers'
reactions, from the vote log."""

from __future__ import annotations

import gradio as gr

from human_ratings.report import figure, markdown
from human_ratings.stats import summary
from story_ui.services import Services


def reactions_markdown(counts: dict[str, dict[str, int]]) -> str:
    """Readers' reactions per system, as a Markdown table."""
    if not counts:
        return "No reactions from readers yet."
    lines = ["Readers' reactions:", "", "| system | 👍 | 👎 | edits |", "|---|---|---|---|"]
    lines += [f"| {s} | {c['up']} | {c['down']} | {c['edit']} |" for s, c in counts.items()]
    return "\n".join(lines)


def build(services: Services) -> None:
    """The tab's layout and wiring."""
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
