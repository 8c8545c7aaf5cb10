"""Tables and plots of the vote statistics, shared by the CLI and the Results tab."""

from __future__ import annotations

import math
from pathlib import Path


def _fmt(v) -> str:
    if isinstance(v, float):
        return "undefined" if math.isnan(v) else f"{v:.3f}"  # "n/a" means: does not apply
    return str(v)


def markdown(summary: dict) -> str:
    """The whole summary as Markdown tables."""
    out = [
        f"**{summary['votes']} votes** from {summary['annotators']} annotators on "
        f"{summary['items']} items.\n"
    ]
    sections = (
        (
            "Win rates (decisive votes, 95% Wilson CI)",
            summary["win_rates"],
            (
                "system",
                "games",
                "wins",
                "losses",
                "ties",
                "both_bad",
                "win_rate",
                "ci_low",
                "ci_high",
            ),
        ),
        (
            "Bradley-Terry ranking (log-strength, 95% bootstrap CI)",
            summary["bradley_terry"],
            ("system", "bt_score", "ci_low", "ci_high"),
        ),
    )
    for title, rows, cols in sections:
        out.append(f"### {title}\n")
        out.append("| " + " | ".join(cols) + " |")
        out.append("|---" * len(cols) + "|")
        out += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
        out.append("")
    out.append("### Inter-annotator agreement\n")
    out.append("| criterion | statistic | value | rests on | note |")
    out.append("|---|---|---|---|---|")
    for r in summary["agreement"]:
        value = _fmt(r["value"]) if r["status"] == "ok" else r["status"]
        rests = f"{r['units']} {r['unit']}, {r['raters']} raters"
        out.append(f"| {r['criterion']} | {r['statistic']} | {value} | {rests} | {r['note']} |")
    out.append("")
    pb = summary["position_bias"]
    out.append("### Position bias\n")
    out.append(
        f"The left story won {pb['left_wins']} of {pb['decisive_votes']} decisive votes "
        f"({_fmt(pb['left_win_rate'])}, 95% CI {_fmt(pb['ci_low'])}-{_fmt(pb['ci_high'])}, "
        f"binomial p = {_fmt(pb['p_value'])})."
    )
    return "\n".join(out) + "\n"


def figure(summary: dict):
    """A matplotlib figure: win rates, Bradley-Terry scores and position bias, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    panels = (
        (summary["win_rates"], "win_rate", "Win rate (decisive votes)"),
        (summary["bradley_terry"], "bt_score", "Bradley-Terry log-strength"),
    )
    for ax, (rows, key, title) in zip(axes, panels):
        names = [r["system"] for r in rows]
        vals = [0.0 if math.isnan(r[key]) else r[key] for r in rows]
        err = [
            [max(v - r["ci_low"], 0) for v, r in zip(vals, rows)],
            [max(r["ci_high"] - v, 0) for v, r in zip(vals, rows)],
        ]
        ax.bar(names, vals, yerr=err, capsize=6, color=[f"C{i}" for i in range(len(rows))])
        ax.set_title(title)
        ax.tick_params(axis="x", labelrotation=20)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls="--")
    pb = summary["position_bias"]
    rate = 0.0 if math.isnan(pb["left_win_rate"]) else pb["left_win_rate"]
    axes[2].bar(
        ["left wins"],
        [rate],
        yerr=[[max(rate - pb["ci_low"], 0)], [max(pb["ci_high"] - rate, 0)]],
        capsize=6,
    )
    axes[2].axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[2].set_ylim(0, 1)
    axes[2].set_title(f"Position bias (n={pb['decisive_votes']})")
    fig.tight_layout()
    return fig


def save_figure(summary: dict, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig = figure(summary)
    fig.savefig(png, dpi=100)
    plt.close(fig)


def decisions_markdown(rows: list[dict]) -> str:
    """Per pair of systems: votes, win rate with its anytime-valid interval, the decision."""
    if not rows:
        return "No decisive votes yet."
    out = [
        "| A | B | A wins | B wins | ties | A's win rate [anytime-valid 95% CI] | decision | "
        "decisive votes still needed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in rows:
        lo, hi = d["ci95"]
        needed = "—" if d["votes_needed"] is None else f"about {d['votes_needed']}"
        out.append(
            f"| {d['a']} | {d['b']} | {d['wins_a']} | {d['wins_b']} | {d['ties']} | "
            f"{_fmt(d['win_rate'])} [{lo:.2f}, {hi:.2f}] | **{d['decision']}** | {needed} |"
        )
    return "\n".join(out)


def annotators_markdown(people: dict[str, dict]) -> str:
    if not people:
        return "No annotator has voted yet."
    out = [
        "| annotator | votes | gold passed | median s / item | share of A | agrees with "
        "majority | excluded because |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, f in people.items():
        out.append(
            f"| {name} | {f['votes']} | {f['gold_passed']}/{f['gold_seen']} | "
            f"{_fmt(f['median_seconds'])} | {_fmt(f['share_a'])} | "
            f"{_fmt(f['majority_agreement'])} ({f['majority_items']}) | "
            f"{'; '.join(f['excluded']) or '—'} |"
        )
    return "\n".join(out)


def study_markdown(status: dict) -> str:
    """A study's status (``Study.status``) for its owner."""
    p = status["progress"]
    state = "closed" if status["closed"] else "complete" if status["complete"] else "running"
    return "\n\n".join(
        [
            f"### Study `{status['study']}`: {state}",
            f"{p['votes']} votes on {p['items']} items; {p['items_with_k']} items have their "
            f"votes (fewest {p['min_votes']}, most {p['max_votes']}); {p['open']} shown and "
            "not yet voted on.",
            "#### Decisions, without the excluded annotators",
            "Win rates come with a confidence sequence (Howard et al. 2021): valid however "
            "often the results are looked at, so a pair is decided as soon as its interval "
            "excludes 0.5 or lies within the study's margin.",
            decisions_markdown(status["decisions"]),
            "#### Decisions with every annotator",
            decisions_markdown(status["decisions_with_excluded"]),
            "#### Annotators",
            annotators_markdown(status["annotators"]),
        ]
    )
