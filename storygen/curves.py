"""Training curves: one writer for every run (fine-tuning, preference tuning) and one plot,
as CSV (for tools) and PNG (for people). Reports plot several runs' curves side by side."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Panel:
    """One plot of a figure: its title and the columns drawn in it, each with its label.
    A column of a held-out evaluation (sparse points) is drawn with markers."""

    title: str
    series: tuple[tuple[str, str], ...]
    ylabel: str = ""


TRAIN_COLUMNS = ("step", "train_loss", "val_loss", "val_ppl", "lr", "tokens_per_s")
TRAIN_PANELS = (
    Panel(
        "Fine-tuning loss",
        (("train_loss", "train"), ("val_loss", "validation")),
        "loss (mean story-token NLL)",
    ),
)
PREFERENCE_COLUMNS = (
    "step",
    "loss",
    "rewards_margins",
    "rewards_accuracies",
    "eval_loss",
    "eval_rewards_margins",
    "eval_rewards_accuracies",
)
PREFERENCE_PANELS = tuple(
    Panel(title, ((name, "train"), (f"eval_{name}", "held out")))
    for name, title in (
        ("loss", "loss"),
        ("rewards_margins", "reward margin (chosen - rejected)"),
        ("rewards_accuracies", "preference accuracy"),
    )
)


def write_curves(
    rows: list[dict], csv_path: Path, columns=TRAIN_COLUMNS, panels=TRAIN_PANELS
) -> Path:
    """Write the per-step rows as CSV (``columns``, empty where a row has no value) and the
    plot beside it (same name, ``.png``); returns the PNG's path."""
    csv_path = Path(csv_path)
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: r.get(k, "") for k in columns} for r in rows)
    png = csv_path.with_suffix(".png")
    plot_curves({csv_path.parent.name: rows}, png, panels)
    return png


def read_curves(csv_path: Path) -> list[dict]:
    """Read a curve CSV back (empty cells dropped)."""
    with Path(csv_path).open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plot_curves(runs: dict[str, list[dict]], png_path: Path, panels=TRAIN_PANELS) -> None:
    """One figure, a plot per panel; each run has its colour, named in the legend when there
    are several."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(panels), figsize=(7 if len(panels) == 1 else 4 * len(panels), 4)
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, panel in zip(axes, panels, strict=True):
        for i, (name, rows) in enumerate(runs.items()):
            for k, (column, label) in enumerate(panel.series):
                points = [(r["step"], r[column]) for r in rows if column in r]
                if not points:
                    continue
                label = f"{name} {label}" if len(runs) > 1 else label
                style = "o--" if k else "-"  # the held-out series: markers at its few steps
                ax.plot(*zip(*points), style, color=f"C{i}", alpha=1 if k else 0.6, label=label)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel("optimizer step")
        if panel.ylabel:
            ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if ax.lines:  # KTO logs no margin or accuracy
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
