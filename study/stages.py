"""Run a study stage by stage: data -> adapter (and its GGUF form) -> comparison report.

Each stage's output is keyed by a hash of its inputs and settings and marked finished by a
``stage.json`` beside it. A rerun reuses a finished stage, an interrupted one runs again where
it stopped (preprocessing writes its files only at the end, training resumes from its last
checkpoint, the comparison from its last story), and a changed setting reruns only the stages
it reaches: a new sampling setting redoes the comparison, not the training.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from eval.compare import Comparison, markdown_table
from eval.compare import run as run_comparison
from eval.compare.generate import settings_key
from finetune.build import build, read_examples
from finetune.config import TrainConfig
from storygen.prompt_format import PROMPT_FORMAT_VERSION
from study import manifest as mf
from study.config import STUDY_ADAPTER, StudyConfig, StudyError

STAGE_FILE = "stage.json"
# Settings of older manifests that no longer exist, and why they can be left out.
RETIRED = {"gguf": "training always writes the adapter's GGUF form (for LLaMA-type bases)"}
MANIFEST = "manifest.json"
REPO = Path(__file__).resolve().parent.parent
TRAIN_FIGURES = ("steps", "train_loss_last", "val_loss_initial", "val_loss", "val_ppl")
# Figures that measure the machine, not the result: recorded, never compared.
MEASURED = ("tokens_per_s", "seconds", "first_token_s", "memory_mib")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _stage(
    name: str,
    key: str,
    directory: Path,
    work: Callable[[], None],
    log: Callable[[str], None],
    outputs: Callable[[], dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Run ``work`` into ``directory`` unless a finished run with the same key is there.
    ``outputs`` lists the stage's files and their hashes (default: every file in it)."""
    marker = directory / STAGE_FILE
    if marker.exists():
        record = json.loads(marker.read_text())
        if record.get("key") == key:
            log(f"{name}: finished before, reused ({directory})")
            return {**record, "reused": True}
    log(f"{name}: running in {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    t0 = time.perf_counter()
    work()
    record = {
        "stage": name,
        "key": key,
        "dir": str(directory),
        "seconds": round(time.perf_counter() - t0, 1),
        "finished": _now(),
        "code": mf.code_version(REPO),  # a reused stage keeps the commit that made it
        "outputs": outputs()
        if outputs
        else mf.tree_hashes(directory, skip=(STAGE_FILE, "checkpoint")),
    }
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(marker)  # the stage counts as finished only once this file is whole
    log(f"{name}: done in {record['seconds']} s")
    return {**record, "reused": False}


def _numbers(result: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, float]:
    return {
        k: v
        for k, v in result.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in skip
    }


def run_study(cfg: StudyConfig, out: Path, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) every stage of ``cfg`` under ``out``; returns the manifest written to
    ``out/manifest.json`` (also rewritten after each stage)."""
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    stages: list[dict[str, Any]] = []
    total = 3

    def log(message: str) -> None:
        if progress:
            print(f"[study {len(stages) + 1}/{total}] {message}", file=sys.stderr, flush=True)

    inputs = mf.source_hashes(cfg.data.source)
    manifest: dict[str, Any] = {
        "study": cfg.name,
        "complete": False,
        "created": _now(),
        "config": cfg.to_dict(),
        "code": mf.code_version(REPO),
        "packages": mf.packages(),
        "machine": mf.machine(),
        "inputs": inputs,
        "stages": stages,
        "figures": {},
    }

    def save() -> None:
        manifest["seconds"] = round(time.perf_counter() - t_start, 1)
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    # 1. Data: raw stories -> train / valid / test JSONL.
    settings = {k: v for k, v in asdict(cfg.data).items() if k != "source"}
    data_key = settings_key(inputs=inputs, data=settings, prompt_format=PROMPT_FORMAT_VERSION)
    data_dir = out / f"data-{data_key}"
    stages.append(
        _stage(
            "data",
            data_key,
            data_dir,
            lambda: build(
                cfg.data.source,
                data_dir,
                cfg.data.split,
                cfg.data.valid_fraction,
                cfg.data.word_budget,
                limit=cfg.data.limit,
                progress=progress,
                test_fraction=cfg.data.test_fraction,
            ),
            log,
        )
    )
    save()
    test_set = data_dir / "test.jsonl"
    if not test_set.exists() or not read_examples(test_set):
        raise StudyError(
            f"{cfg.name}: the data has no test story: set data.test_fraction above 0, or use a "
            "source with a test split of its own"
        )

    # 2. The SFT adapter, and its GGUF form for llama.cpp.
    data_out = stages[-1]["outputs"]
    train_cfg = TrainConfig(**{**cfg.train, "data_dir": str(data_dir), "output_dir": "."})
    train_key = settings_key(
        data={k: data_out[k] for k in ("train.jsonl", "valid.jsonl")},
        train={k: v for k, v in train_cfg.to_dict().items() if k not in ("data_dir", "output_dir")},
    )
    train_dir = out / f"train-{train_key}"

    def train_adapter() -> None:
        from finetune.train import train

        if (train_dir / "metrics.json").exists():
            return  # trained before (and killed before the stage was marked): not again
        # Writes the adapter, its GGUF form (LLaMA-type bases) and its curves.
        train(TrainConfig(**{**train_cfg.to_dict(), "output_dir": str(train_dir)}), progress)

    stages.append(_stage("train", train_key, train_dir, train_adapter, log))
    metrics = json.loads((train_dir / "metrics.json").read_text())
    manifest["figures"]["train"] = {k: metrics[k] for k in TRAIN_FIGURES if k in metrics}
    split = "each story's source_key: a hash of its raw prompt and story (no seed)"
    manifest["seeds"] = {"split": split, "train": train_cfg.seed}
    save()

    # 3. The comparison report, on the test split, with the adapter trained here.
    systems = []
    for system in cfg.compare["systems"]:
        if isinstance(system, dict) and system.get("adapter") == STUDY_ADAPTER:
            system = {"run_dir": str(train_dir), **system, "adapter": str(train_dir)}
        systems.append(system)
    compare_data = {**cfg.compare, "systems": systems, "test": str(test_set)}
    comparison = Comparison.from_dict(compare_data, f"{cfg.name}: compare")
    compare_dir = out / "compare"
    compare_key = settings_key(
        test=data_out["test.jsonl"],
        adapter=stages[-1]["outputs"],
        compare=compare_data,
    )
    results: list[dict] = []

    def compare() -> None:
        results.extend(run_comparison(comparison, compare_dir))

    def compare_outputs() -> dict[str, str]:
        # This comparison's files only: the folder also keeps earlier systems' caches.
        names = {s.name for s in comparison.systems}
        every = mf.tree_hashes(compare_dir, skip=(STAGE_FILE,))
        return {
            k: v
            for k, v in every.items()
            if "/" not in k or k.split("/", 1)[1].split(".", 1)[0] in names
        }

    stages.append(_stage("compare", compare_key, compare_dir, compare, log, compare_outputs))
    if not results:
        results = json.loads((compare_dir / "results.json").read_text())
    manifest["seeds"]["compare"] = comparison.seed
    for result in results:
        manifest["figures"][result["system"]] = _numbers(result, MEASURED)
    manifest["complete"] = True
    save()
    write_report(manifest, results, out / "study.md")
    return manifest


def write_report(manifest: dict[str, Any], results: list[dict], path: Path) -> None:
    """The study in Markdown: what ran, how long each stage took, and the comparison table."""
    code = manifest["code"]
    machine = manifest["machine"]
    lines = [
        f"# Study {manifest['study']}",
        "",
        f"Commit {code['commit']}{' (with uncommitted changes)' if code['dirty'] else ''}; "
        f"{machine['cpu']}, {machine['cores']} cores"
        + (f", {machine['gpu']}" if machine.get("gpu") else ", no GPU")
        + f"; {manifest['seconds']} s in all.",
        "",
        "| stage | key | seconds | reused |",
        "|---|---|---|---|",
    ]
    for s in manifest["stages"]:
        lines.append(f"| {s['stage']} | {s['key']} | {s['seconds']} | {s['reused']} |")
    train = manifest["figures"].get("train", {})
    lines += [
        "",
        "Training: " + ", ".join(f"{k} {v:.4g}" for k, v in train.items()),
        "",
        markdown_table(results),
        "The comparison's own report (intervals, differences, plots) is in compare/. "
        "Reproduce: python -m study verify manifest.json",
        "",
    ]
    path.write_text("\n".join(lines))


def verify(manifest_path: Path, out: Path | None = None, progress: bool = True) -> dict:
    """Rerun the study a manifest describes, from nothing, and compare: each stage's files
    (bit for bit) and each figure (within its tolerance)."""
    old = json.loads(Path(manifest_path).read_text())
    config = {k: v for k, v in old["config"].items() if k not in RETIRED}
    cfg = StudyConfig.from_dict(config, str(manifest_path))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = out or Path(manifest_path).parent / f"verify-{stamp}"
    if out.exists() and any(out.iterdir()):
        raise StudyError(f"{out} is not empty: a verification reruns every stage from nothing")
    new = run_study(cfg, out, progress)
    files = []
    for before, after in zip(old["stages"], new["stages"], strict=True):
        for name, digest in before["outputs"].items():
            again = after["outputs"].get(name)
            files.append(
                {
                    "stage": before["stage"],
                    "file": name,
                    "verdict": "identical"
                    if again == digest
                    else "missing"
                    if not again
                    else "differs",
                }
            )
    report = {
        "manifest": str(manifest_path),
        "rerun": str(out),
        "inputs_identical": old["inputs"] == new["inputs"],
        "files": files,
        "figures": mf.compare_figures(old["figures"], new["figures"]),
    }
    # Data preparation is deterministic: its files must be the same bytes. The other stages'
    # files hold timings (and, off this machine, float rounding): their figures decide.
    report["reproduced"] = (
        report["inputs_identical"]
        and all(f["verdict"] == "identical" for f in files if f["stage"] == "data")
        and all(f["verdict"] in ("exact", "within") for f in report["figures"])
    )
    (out / "verify.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
