"""The Results tab: win rates, the Bradley-Terry ranking, agreement, position bias and readers'
reactions, from the vote log. While a study runs it is its owner's: annotators who saw running
win rates would learn which system is which, and looking is the owner's job (the Study tab)."""

from __future__ import annotations

import gradio as gr

from human_ratings.report import figure, markdown
from human_ratings.stats import summary
from story_ui import rate
from story_ui.services import Services


def reactions_markdown(counts: dict[str, dict[str, int]]) -> str:
    """Readers' reactions per system, as a Markdown table."""
    if not counts:
        return "No reactions from readers yet."
    lines = ["Readers' reactions:", "", "| system | 👍 | 👎 | edits |", "|---|---|---|---|"]
    lines += [f"| {s} | {c['up']} | {c['down']} | {c['edit']} |" for s, c in counts.items()]
    return "\n".join(lines)


def results(services: Services, state, profile) -> tuple:
    """(Markdown, figure, sync line) for this visitor: the study's owner, anyone once the study
    is closed or outside a study, and otherwise nobody."""
    study = services.study
    running = study is not None and not study.closed
    if running and not rate.is_owner(services, state, profile):
        msg = (
            "The results are the study owner's while the study runs; they are shown here once "
            "it is closed. (Owners: sign in on the Rate tab with your owner code.)"
        )
        return msg, None, services.sync_status
    votes = study.votes() if study is not None else services.store.votes()
    reactions = reactions_markdown(services.reactions.counts())
    if not votes:
        return "No votes yet.\n\n" + reactions, None, services.sync_status
    s = summary(votes, bootstrap_rounds=100)
    return markdown(s) + "\n\n" + reactions, figure(s), services.sync_status


def build(services: Services, rater: gr.State) -> None:
    """The tab's layout and wiring."""
    sync = gr.Markdown(services.sync_status)
    refresh = gr.Button("Refresh results", elem_id="refresh-results")
    table = gr.Markdown(elem_id="results")
    plot = gr.Plot(label="Win rates, Bradley-Terry and position bias")

    def show(state, profile: gr.OAuthProfile | None = None):
        return results(services, state, profile)

    refresh.click(show, rater, [table, plot, sync], api_name="results")
