"""A study's configuration: one YAML file, from raw stories to the comparison report."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.config import TrainConfig
from storygen.config import ConfigError, from_dict, read_yaml

STUDY_ADAPTER = "study"
"""A system's ``adapter`` that means the adapter this study trains."""


class StudyError(ValueError):
    """A study that cannot be run as configured."""


@dataclass
class DataSettings:
    """Where the stories come from and how they are split (``python -m finetune preprocess``)."""

    source: str
    """A CSV/JSONL/Parquet file, a folder of the original .wp_source/.wp_target files, or
    hub:euclaise/writingprompts."""
    split: str = "all"
    """For an original-release folder: the split to read, or all of them."""
    valid_fraction: float = 0.1
    """Share of the train stories held out for validation, when the source has no valid split."""
    test_fraction: float = 0.1
    """Share of the train stories held out for testing, when the source has no test split."""
    word_budget: int = 1000
    """Stories are cut to this many words, at a sentence end."""
    limit: int | None = None
    """Read at most this many pairs (None: all)."""

    def __post_init__(self):
        for name in ("valid_fraction", "test_fraction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, not {value!r}")
            if not 0 <= value < 1:
                raise ConfigError(f"{name} must be at least 0 and below 1, got {value}")
        if self.valid_fraction + self.test_fraction >= 1:
            raise ConfigError("valid_fraction + test_fraction must leave stories to train on")
        if self.split not in ("all", "train", "valid", "test"):
            raise ConfigError(f"split must be all, train, valid or test, not {self.split!r}")
        for name in ("word_budget", "limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number of at least 1, not {value!r}")


@dataclass
class StudyConfig:
    """The whole study. ``train`` holds :class:`~finetune.config.TrainConfig` fields (its data
    and output folders are the study's; training also writes the adapter's GGUF form, the
    llama.cpp backend's, for a LLaMA-type base); ``compare`` holds an eval comparison without its
    ``test`` (the study's test split), where a system with ``adapter: study`` uses the adapter
    trained here."""

    name: str
    data: DataSettings
    train: dict[str, Any] = field(default_factory=dict)
    compare: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StudyConfig:
        try:
            data = read_yaml(path)
        except ConfigError as exc:
            raise StudyError(str(exc)) from exc
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: Any, where: str = "study") -> StudyConfig:
        """Check every section now, so that a typo fails before an hour of training."""
        if not isinstance(data, dict):
            raise StudyError(f"{where}: expected a mapping with name, data, train and compare")
        try:
            settings = from_dict(DataSettings, data.get("data"), f"{where}: data")
            cfg = from_dict(cls, {**data, "data": settings}, where)
            reserved = {"data_dir", "output_dir"} & set(cfg.train)
            if reserved:
                raise ConfigError(f"{where}: train: {sorted(reserved)} are set by the study")
            TrainConfig(**{**cfg.train, "data_dir": ".", "output_dir": "."})
        except ConfigError as exc:
            raise StudyError(str(exc)) from exc
        except (TypeError, ValueError) as exc:
            raise StudyError(f"{where}: train: {exc}") from exc
        if "test" in cfg.compare:
            raise StudyError(f"{where}: compare: 'test' is the study's own test split")
        if not cfg.compare.get("systems"):
            raise StudyError(f"{where}: compare needs a list of systems")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
