"""What produced a result: data and output hashes, the resolved config, code, packages, machine.

The manifest is written beside the study's results; :func:`compare_figures` says, figure by
figure, whether a rerun reproduced it.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "accelerate",
    "llama_cpp_python",
    "gguf",
    "sacrebleu",
    "vaderSentiment",
    "numpy",
    "pyarrow",
)

# How close a rerun's figure must be to count as reproduced. Data preparation is deterministic
# and is compared bit for bit (its files' hashes). Training on a CPU with fixed seeds and
# threads repeats exactly on one machine, but float sums may round differently on another
# (other SIMD widths, thread counts), so its losses and the perplexities are compared to 0.1%.
# Generated text can take another path after one different token, so the figures computed from
# it are compared to 5%; a difference beyond that is reported, not hidden.
TOLERANCE = {"train": 1e-3, "perplexity": 1e-3, "generation": 0.05}
PERPLEXITY_FIGURES = ("token_ppl", "word_ppl", "nll_per_token", "tokens", "words")


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks (a full dataset is gigabytes)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_hashes(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Hash of every file under ``root`` (relative path -> SHA-256), in a stable order."""
    root = Path(root)
    return {
        str(p.relative_to(root)): file_hash(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def source_hashes(source: str) -> dict[str, str]:
    """The input data's hashes: a file's, each original-release file's, or a hub name's."""
    if source.startswith("hub:"):
        return {source: "hub dataset (not hashed: read through the datasets library)"}
    path = Path(source)
    if path.is_dir():
        return {p.name: file_hash(p) for p in sorted(path.glob("*.wp_*"))}
    return {path.name: file_hash(path)}


def code_version(repo: Path) -> dict[str, Any]:
    """The project's commit and whether the working tree differed from it."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def packages() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, GPU, OS and Python of the machine the study ran on."""
    info: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "gpu": None,
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().split("\n", 1)[0].split()
        info["memory_gib"] = round(int(first[1]) / 2**20, 1)
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def _kind(figure: str, stage: str) -> str:
    if stage == "train":
        return "train"
    return "perplexity" if figure in PERPLEXITY_FIGURES else "generation"


def compare_figures(old: dict[str, dict], new: dict[str, dict]) -> list[dict[str, Any]]:
    """Each figure of ``old`` (``{group: {figure: value}}``) against the rerun's: ``exact``,
    ``within`` its tolerance, ``differs`` or ``missing``."""
    rows = []
    for group, figures in old.items():
        stage = "train" if group == "train" else "compare"
        for figure, value in figures.items():
            tolerance = TOLERANCE[_kind(figure, stage)]
            again = new.get(group, {}).get(figure)
            if again is None:
                verdict, rel = "missing", None
            elif again == value or (_nan(value) and _nan(again)):
                verdict, rel = "exact", 0.0
            else:
                rel = abs(again - value) / max(abs(value), 1e-12)
                verdict = "within" if rel <= tolerance else "differs"
            rows.append(
                {
                    "group": group,
                    "figure": figure,
                    "value": value,
                    "rerun": again,
                    "relative_difference": rel,
                    "tolerance": tolerance,
                    "verdict": verdict,
                }
            )
    return rows


def _nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)
