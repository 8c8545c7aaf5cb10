"""Preference tuning of an SFT adapter with TRL: DPO on pairs, KTO on unpaired reactions.

QLoRA as in ``finetune train``: the NF4 base (guarded against bitsandbytes' CPU repack, see
:func:`storygen.loading.guard_4bit_for_training`) with the parent SFT adapter loaded trainable.
TRL keeps a frozen copy of that adapter as the reference model (its "ref" adapter), so the
tuned adapter is pulled towards what people preferred and held near its parent. The output
adapter records its lineage (parent, method, data hash, counts) in ``storygen_adapter.json`` and
loads wherever an adapter loads (its GGUF form is written too, for LLaMA-type bases).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from storygen.config import QUANTIZATIONS, load_config
from storygen.curves import PREFERENCE_COLUMNS, PREFERENCE_PANELS, write_curves

METHODS = ("dpo", "kto")


class PreferenceDataError(ValueError):
    """Preference data that cannot be trained on."""


@dataclass
class PreferenceConfig:
    """A preference-tuning run; ``python -m finetune tune --help`` lists every field."""

    parent: str = "demo"
    """The SFT adapter to start from and to keep as the reference: a folder, or 'demo'."""
    data_dir: str = "runs/prefer"
    """Folder written by ``python -m finetune prefer`` (pairs.jsonl, unpaired.jsonl)."""
    output_dir: str = "runs/adapter-dpo"
    """Where the tuned adapter, checkpoints and curves go."""
    method: str = "dpo"
    """dpo (pairs.jsonl) or kto (unpaired.jsonl)."""
    base: str = "embedded"
    """The parent's base model."""
    quantization: str = "nf4"
    """Base weights while training: nf4 (QLoRA), int8, bf16 or fp32."""
    device: str = "auto"
    """auto, cpu or cuda."""
    beta: float = 0.1
    """How far the tuned adapter may move from its parent (TRL's beta)."""
    learning_rate: float = 5e-5
    batch_size: int = 2
    grad_accum: int = 2
    max_steps: int = 0
    """Stop after this many optimizer steps (0: use epochs)."""
    epochs: float = 1.0
    max_length: int = 512
    """Tokens per prompt + completion; longer ones are cut at the end."""
    held_out: float = 0.2
    """Share of the examples kept out of training to measure preference accuracy on."""
    eval_steps: int = 10
    save_steps: int = 10
    seed: int = 42
    threads: int = 0
    """CPU threads for torch (0: leave torch's default)."""
    name: str = "adapter-dpo"

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}")
        if not 0 <= self.held_out < 1:
            raise ValueError("held_out must be at least 0 and below 1")
        for name in ("batch_size", "grad_accum", "max_length", "eval_steps", "save_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict | None = None):
        """Read a YAML file (optional) and apply overrides on top (unknown keys are named)."""
        return load_config(cls, path, overrides)


def read_examples(
    cfg: PreferenceConfig, prompt_format: str | None = None
) -> tuple[list[dict], list[dict], str]:
    """(train, held out, data hash) from the prefer output; held-out rows chosen by a hash of
    the prompt and texts, so the split does not move when examples are added. Rows whose
    prompts were rendered in another format than ``prompt_format`` (the parent adapter's) are
    refused: the child would learn prompts it is never given."""
    name = "pairs.jsonl" if cfg.method == "dpo" else "unpaired.jsonl"
    path = Path(cfg.data_dir) / name
    if not path.exists():
        raise PreferenceDataError(f"{path} does not exist: run `python -m finetune prefer` first")
    raw = path.read_bytes()
    keys = (
        ("prompt", "chosen", "rejected")
        if cfg.method == "dpo"
        else ("prompt", "completion", "label")
    )
    full = [json.loads(line) for line in raw.splitlines() if line.strip()]
    other = {r["prompt_format"] for r in full if r.get("prompt_format")} - {prompt_format}
    if prompt_format and other:
        raise PreferenceDataError(
            f"{path}: its prompts are in {', '.join(sorted(other))}, the parent adapter reads "
            f"{prompt_format}: run `python -m finetune prefer ... --prompt-format {prompt_format}`"
        )
    rows = [{k: r[k] for k in keys} for r in full]
    if cfg.method == "kto" and len({r["label"] for r in rows}) < 2:
        raise PreferenceDataError(f"{path}: KTO needs both liked and disliked examples")
    if not rows:
        raise PreferenceDataError(f"{path} holds no example")

    def held(row: dict) -> bool:
        digest = hashlib.blake2b(json.dumps(row, sort_keys=True).encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big") / 2**64 < cfg.held_out

    train = [r for r in rows if not held(r)]
    if not train:
        raise PreferenceDataError(f"{path}: every example was held out; lower held_out")
    return train, [r for r in rows if held(r)], hashlib.sha256(raw).hexdigest()


def tune(cfg: PreferenceConfig, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) preference tuning; returns the final metrics."""
    import torch
    from datasets import Dataset
    from peft import PeftModel
    from transformers.trainer_utils import get_last_checkpoint
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    from finetune.train import halve_weights, write_gguf_form
    from storygen.config import ModelSpec
    from storygen.loading import (
        ADAPTER_META,
        LoadError,
        adapter_path,
        check_adapter,
        load_base,
        read_adapter_meta,
        weights_sha256,
    )

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    spec = ModelSpec(
        base=cfg.base, adapter=cfg.parent, quantization=cfg.quantization, device=cfg.device
    )
    parent_dir = adapter_path(spec)
    if parent_dir is None or not parent_dir.exists():
        raise LoadError(f"parent adapter {cfg.parent!r} does not exist: name an SFT adapter folder")
    parent = read_adapter_meta(parent_dir)
    train_rows, held_rows, data_hash = read_examples(cfg, parent.get("prompt_format"))
    base, tokenizer, base_id, device = load_base(
        ModelSpec(base=cfg.base, adapter=None, quantization=cfg.quantization, device=cfg.device),
        trainable=True,
    )
    check_adapter(parent, base_id, parent_dir)
    model = PeftModel.from_pretrained(base, str(parent_dir), is_trainable=True)
    out = Path(cfg.output_dir)
    args = dict(
        output_dir=str(out / "checkpoints"),
        beta=cfg.beta,
        learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_steps=cfg.max_steps or -1,
        num_train_epochs=cfg.epochs,
        max_length=cfg.max_length,
        eval_strategy="steps" if held_rows else "no",
        eval_steps=cfg.eval_steps,
        save_steps=cfg.save_steps,
        logging_steps=1,
        report_to=[],
        seed=cfg.seed,
        use_cpu=device.type == "cpu",
        bf16=False,
        disable_tqdm=not progress,
    )
    trainer_cls, config_cls = (
        (DPOTrainer, DPOConfig) if cfg.method == "dpo" else (KTOTrainer, KTOConfig)
    )
    trainer = trainer_cls(
        model=model,
        args=config_cls(**args),
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(held_rows) if held_rows else None,
        processing_class=tokenizer,
    )
    last = get_last_checkpoint(str(out / "checkpoints")) if (out / "checkpoints").is_dir() else None
    trainer.train(resume_from_checkpoint=last)  # by step number: checkpoint-10 after -8
    history = trainer.state.log_history
    metrics = {
        "steps": trainer.state.global_step,
        "train_examples": len(train_rows),
        "held_out_examples": len(held_rows),
        **_last_eval(history),
    }
    model.save_pretrained(out, selected_adapters=["default"])
    halve_weights(out / "adapter_model.safetensors")
    meta = {
        **{k: parent[k] for k in ("base_model", "prompt_format") if k in parent},
        "name": cfg.name,
        "quantization": cfg.quantization,
        "lineage": {
            "parent": parent.get("name") or str(parent_dir),
            # As given ("demo" or a path): what loads the parent on another machine too; its
            # weights' hash tells whether what that name loads later is still this parent.
            "parent_adapter": cfg.parent,
            "parent_dir": str(parent_dir),
            "parent_sha256": weights_sha256(parent_dir),
            "method": cfg.method,
            "data": str(Path(cfg.data_dir)),
            "data_sha256": data_hash,
            "train_examples": len(train_rows),
            "held_out_examples": len(held_rows),
            "beta": cfg.beta,
        },
        "metrics": metrics,
    }
    (out / ADAPTER_META).write_text(json.dumps(meta, indent=2) + "\n")
    (out / "preference_config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_curves(
        _curve_rows(history), out / "preference_curve.csv", PREFERENCE_COLUMNS, PREFERENCE_PANELS
    )
    write_gguf_form(out)
    (out / "README.md").unlink(missing_ok=True)  # peft's blank model card
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return metrics


def _last_eval(history: list[dict]) -> dict[str, float]:
    """The last held-out loss, reward margin and preference accuracy (not the timings)."""
    evals = [h for h in history if "eval_loss" in h]
    keep = ("eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_kl")
    return {k.replace("/", "_"): evals[-1][k] for k in keep if evals and k in evals[-1]}


def _curve_rows(history: list[dict]) -> list[dict]:
    """TRL's log as curve rows: step, loss, reward margin, preference accuracy (and held-out)."""
    rows = []
    for h in history:
        if "step" not in h:
            continue
        row = {"step": h["step"]}
        for key in (
            "loss",
            "rewards/margins",
            "rewards/accuracies",
            "eval_loss",
            "eval_rewards/margins",
            "eval_rewards/accuracies",
        ):
            if key in h and isinstance(h[key], (int, float)) and math.isfinite(h[key]):
                row[key.replace("/", "_")] = h[key]
        if len(row) > 1:
            rows.append(row)
    return rows
