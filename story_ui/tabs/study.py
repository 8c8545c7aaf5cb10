"""The Study tab, for the study's owner: progress, the anytime-valid decisions, each
annotator's figures and who is excluded, with the Bradley-Terry ranking with and without them."""

from __future__ import annotations

import gradio as gr

from human_ratings.report import study_markdown
from human_ratings.stats import bradley_terry_ci
from story_ui import rate
from story_ui.services import Services


def owner_view(services: Services, state, profile) -> tuple[str, object]:
    study = services.study
    if study is None:
        return "No study is running on this app.", None
    if not rate.is_owner(services, state, profile):
        return (
            "This tab is the study owner's: sign in on the Rate tab with an owner's invite "
            "code (`python -m human_ratings invite FOLDER --owner`), or with Hugging Face as "
            "an owner.",
            None,
        )
    status = study.status()
    return study_markdown(status), ranking_figure(study, status["excluded"])


def ranking_figure(study, excluded: list[str]):
    """Bradley-Terry strengths with 95% intervals, with and without the excluded annotators."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    votes = study.votes()
    if not votes:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for ax, (title, chosen) in zip(
        axes,
        (
            ("every annotator", votes),
            ("without the excluded", [v for v in votes if v.annotator not in excluded]),
        ),
        strict=True,
    ):
        rows = bradley_terry_ci(chosen, rounds=100) if chosen else []
        names = [r["system"] for r in rows]
        vals = [r["bt_score"] for r in rows]
        err = [
            [max(v - r["ci_low"], 0) for v, r in zip(vals, rows, strict=True)],
            [max(r["ci_high"] - v, 0) for v, r in zip(vals, rows, strict=True)],
        ]
        ax.bar(names, vals, yerr=err if rows else None, capsize=6)
        ax.set_title(f"Bradley-Terry, {title} ({len(chosen)} votes)", fontsize=10)
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig


def build(services: Services, rater: gr.State) -> None:
    """The tab's layout and wiring."""
    refresh = gr.Button("Refresh the study", elem_id="refresh-study")
    view = gr.Markdown(elem_id="study-status")
    plot = gr.Plot(label="Ranking with and without the excluded annotators")

    def show(state, profile: gr.OAuthProfile | None = None):
        return owner_view(services, state, profile)

    refresh.click(show, rater, [view, plot], api_name="study_status")
