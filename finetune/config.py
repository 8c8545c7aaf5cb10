"""Training configuration: one dataclass, loadable from YAML, overridable from the command line."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from storygen.config import QUANTIZATIONS, load_config

# LoRA on every linear projection, named per architecture (model.config.model_type).
TARGET_MODULES = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
}


@dataclass
class TrainConfig:
    """Everything a QLoRA fine-tuning run needs; ``python -m finetune train --help`` lists it."""

    data_dir: str = "runs/data"
    """Folder with train.jsonl and valid.jsonl written by ``python -m finetune preprocess``."""
    output_dir: str = "runs/adapter"
    """Where the adapter, checkpoints, metrics and loss curves go."""
    base: str = "embedded"
    """Base model: ``embedded`` (SmolLM2-135M), ``gemma3-270m`` (opt-in), a local folder or a
    hub id."""
    quantization: str = "nf4"
    """Base weights while training: nf4 (QLoRA), int8, bf16 or fp32 (plain LoRA)."""
    device: str = "auto"
    """auto, cpu or cuda."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    max_length: int = 512
    """Tokens per example (prompt + story); longer stories are cut at the end."""
    batch_size: int = 4
    """Examples per micro-batch."""
    grad_accum: int = 2
    """Micro-batches per optimizer step."""
    learning_rate: float = 2e-4
    """Peak learning rate (linear warm-up, then cosine decay)."""
    warmup_steps: int = 10
    """Optimizer steps of linear warm-up."""
    epochs: float = 1.0
    """Passes over the training set (fractions allowed)."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: use epochs)."""
    eval_steps: int = 25
    """Evaluate validation loss and perplexity every this many steps."""
    save_steps: int = 25
    """Write a resumable checkpoint every this many steps."""
    max_eval_examples: int = 64
    """Validation examples scored at each evaluation."""
    gradient_checkpointing: bool = True
    """Recompute activations in the backward pass to save memory."""
    seed: int = 42
    """Data order, LoRA init and dropout."""
    threads: int = 0
    """CPU threads for torch (0: leave torch's default)."""
    name: str = "adapter"
    """A name recorded in the adapter's metadata."""

    def __post_init__(self):
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"quantization must be one of {QUANTIZATIONS}")
        for name in (
            "lora_r",
            "max_length",
            "batch_size",
            "grad_accum",
            "eval_steps",
            "save_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError("set epochs or max_steps")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: dict[str, Any] | None = None
    ) -> TrainConfig:
        """Read a YAML file (optional) and apply overrides on top (unknown keys are named)."""
        return load_config(cls, path, overrides)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
