"""A comparison's report: the results table, the paired differences between systems, and
the plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

from eval.intervals import paired_difference
from eval.registry import figures_for

TABLE_COLUMNS = (
    "token_ppl",
    "word_ppl",
    "bleu",
    "rouge1",
    "rouge2",
    "rougeL",
    "distinct_1",
    "distinct_2",
    "self_bleu",
    "repeated_4gram_rate",
    "adherence",
    "beat_coverage",
    "beat_order",
    "prompt_ranking_acc",
    "mean_words",
    "length_met",
    "ended",
    "tokens_per_s",
    "first_token_s",
    "seconds_per_story",
    "memory_mib",
)


def markdown_table(results: list[dict]) -> str:
    cols = [c for c in TABLE_COLUMNS if any(c in r for r in results)]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in results:
        cells = []
        for c in cols:
            v = r.get(c)
            ci = r.get("ci95", {}).get(c)
            cells.append(
                ""
                if v is None or (isinstance(v, float) and math.isnan(v))
                else f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                if isinstance(v, float)
                else str(v)
            )
        lines.append(f"| {r['system']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def trained_on(spec) -> str:
    """What trained a system's adapter, from the data report it carries
    (``data_report.json``): each source of a data mix with its writer, its training stories and
    whether a model wrote them, and the model-written share; model-written stories are never
    mixed silently with people's."""
    from storygen.loading import LoadError, adapter_path

    if spec.endpoint:
        return f"served by {spec.endpoint}: not known here"
    try:
        folder = adapter_path(spec)
    except LoadError as exc:
        return f"unknown ({exc})"
    if folder is None:
        return "no adapter: the base model"
    path = folder / "data_report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return f"{folder.name}: no data report"
    mix = report.get("mix")
    if not mix:
        return f"{folder.name}: {report.get('train', '?')} stories of one source (no mix)"
    parts = [
        f"{s['train']} by {s['writer']}" + (" (model-written)" if s["model_written"] else "")
        for s in mix["sources"]
    ]
    share = mix["model_written_share"]["train words"]
    return f"{folder.name}: " + ", ".join(parts) + f"; {share:.0%} of its words model-written"


def trained_on_table(results: list[dict]) -> str:
    """Each system's training data, as a table (empty when no result names it)."""
    if not any("trained_on" in r for r in results):
        return ""
    lines = ["| system | trained on |", "|---|---|"]
    lines += [f"| {r['system']} | {r.get('trained_on', '')} |" for r in results]
    return "\n".join(lines) + "\n\n"


def plot_metrics(results: list[dict], png: Path) -> None:
    """One small bar chart per metric, systems side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = [c for c in TABLE_COLUMNS if all(isinstance(r.get(c), (int, float)) for r in results)]
    if not cols:
        return
    ncols = 4
    nrows = math.ceil(len(cols) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False)
    names = [r["system"] for r in results]
    for ax, col in zip(axes.flat, cols):
        ax.bar(names, [r[col] for r in results], color=[f"C{i}" for i in range(len(names))])
        ax.set_title(col, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    for ax in list(axes.flat)[len(cols) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)


def system_differences(rows: dict[str, list[dict]], metrics: list[str]) -> list[dict]:
    """Every later system minus every earlier one, per figure both have per item, with the
    paired 95% interval (``rows``: each system's per-item rows of this run, in order)."""
    out = []
    names = list(rows)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            figures_b = {f.name for f in figures_for(rows[b], metrics)}
            for figure in figures_for(rows[a], metrics):
                if figure.name in figures_b:
                    out.append({"a": a, "b": b, **paired_difference(figure, rows[a], rows[b])})
    return out


def differences_table(differences: list[dict]) -> str:
    """The differences as Markdown: b - a, with the interval; '*' where it excludes zero."""
    if not differences:
        return ""
    lines = [
        "",
        "Differences (b - a, paired bootstrap 95% interval over the same items; * excludes 0):",
        "",
        "| b | a | metric | difference | 95% interval | items |",
        "|---|---|---|---|---|---|",
    ]
    for d in differences:
        lo, hi = d["ci95"]
        star = " *" if lo > 0 or hi < 0 else ""
        lines.append(
            f"| {d['b']} | {d['a']} | {d['metric']} | {d['difference']:+.3f}{star} | "
            f"[{lo:+.3f}, {hi:+.3f}] | {d['n_items']} |"
        )
    return "\n".join(lines) + "\n"
