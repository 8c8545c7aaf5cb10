"""Loss curves of a training run, as CSV (for tools) and PNG (for people)."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ("step", "train_loss", "val_loss", "val_ppl", "lr", "tokens_per_s")


def write_curves(history: list[dict], csv_path: Path, png_path: Path | None = None) -> None:
    """Write the per-step history; the PNG shows train and validation loss against steps."""
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in COLUMNS})
    if png_path is not None:
        plot_curves({csv_path.parent.name: history}, png_path)


def read_curves(csv_path: Path) -> list[dict]:
    """Read a loss_curve.csv back (empty cells dropped)."""
    with csv_path.open(newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def plot_curves(runs: dict[str, list[dict]], png_path: Path) -> None:
    """One figure: training loss (lines) and validation loss (markers) per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, history) in enumerate(runs.items()):
        color = f"C{i}"
        train = [(h["step"], h["train_loss"]) for h in history if "train_loss" in h]
        val = [(h["step"], h["val_loss"]) for h in history if "val_loss" in h]
        if train:
            ax.plot(*zip(*train), color=color, alpha=0.6, label=f"{name} train")
        if val:
            ax.plot(*zip(*val), "o--", color=color, label=f"{name} validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean story-token NLL)")
    ax.set_title("Fine-tuning loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
