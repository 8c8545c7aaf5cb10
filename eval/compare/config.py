"""A comparison's configuration and its test set."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval import registry
from storygen.config import ConfigError, SystemSpec, from_dict, read_yaml
from storygen.request import Plan, RequestError, StoryRequest


class EvalError(ValueError):
    """A comparison file or test set that cannot be used."""


@dataclass
class Comparison:
    """Systems compared on one test set with the same seeds (``eval/compare.yaml``)."""

    test: str
    """A test set written by ``python -m finetune preprocess`` (its test.jsonl or valid.jsonl)."""
    systems: list[SystemSpec]
    """Each a name, a model (``base``, ``adapter``, ``backend`` ...), ``sampling`` and ``plan``."""
    limit: int = 20
    """Test items used: the first this many (after ``exclude``)."""
    seed: int = 1000
    """The run's seed: item i's story is written with seed + i (:mod:`storygen.items`)."""
    exclude: list[str] = field(default_factory=list)
    """JSONL files (e.g. another adapter's train.jsonl) whose story ids are left out of the test
    set, so that adapters trained on different preprocessings are scored on stories none of
    them saw."""
    metrics: list[str] = field(default_factory=lambda: list(registry.METRICS))
    """The metrics to run (``eval/registry.py``)."""
    window: int | None = None
    """Perplexity: tokens the model sees at once (default: its context, at most 2048)."""
    stride: int | None = None
    """Perplexity: tokens scored per window step (default: half the window); each story token
    is scored once, with up to ``window - stride`` tokens of context before it."""
    max_story_tokens: int | None = None
    """Perplexity: score each reference story's first this many tokens only (default: all)."""

    @classmethod
    def load(cls, path: Path) -> Comparison:
        try:
            data = read_yaml(path)
        except ConfigError as exc:
            raise EvalError(str(exc)) from exc
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str) -> Comparison:
        """A comparison from its YAML form (``path`` names where it came from in errors)."""
        data = dict(data) if isinstance(data, dict) else data
        if not isinstance(data, dict) or not data.get("systems") or not data.get("test"):
            raise EvalError(f"{path}: needs 'test' (a JSONL file) and a list of 'systems'")
        try:
            systems = [SystemSpec.from_dict(s, str(path)) for s in data.pop("systems")]
            comparison = from_dict(cls, {**data, "systems": systems}, str(path))
        except ConfigError as exc:
            raise EvalError(str(exc)) from exc
        names = [s.name for s in systems]
        if len(set(names)) != len(names):
            raise EvalError(f"{path}: system names must be unique, got {names}")
        known = tuple(registry.METRICS)
        unknown = set(comparison.metrics) - set(known)
        if unknown:
            raise EvalError(f"{path}: unknown metrics {sorted(unknown)}; known: {known}")
        for name in ("window", "stride", "max_story_tokens"):
            value = getattr(comparison, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise EvalError(f"{path}: {name} must be a whole number, got {value!r}")
            if value is not None and value < 1:
                raise EvalError(f"{path}: {name} must be at least 1, got {value}")
        if not isinstance(comparison.exclude, list) or not all(
            isinstance(p, str) for p in comparison.exclude
        ):
            raise EvalError(
                f"{path}: exclude must be a list of JSONL paths, got {comparison.exclude!r}"
            )
        if comparison.window and comparison.stride and comparison.stride > comparison.window:
            raise EvalError(f"{path}: stride ({comparison.stride}) exceeds window")
        return comparison


TEST_SET_FORM = (
    "a test set is the JSONL that `python -m finetune preprocess` writes (its test.jsonl, or "
    "valid.jsonl), one story a line with its id, request and completion"
)


def _ids(path: Path) -> set[str]:
    """The story ids of a JSONL written by ``finetune preprocess``."""
    try:
        with path.open() as f:
            return {str(json.loads(line)["id"]) for line in f if line.strip()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvalError(f"cannot read the story ids of {path} to exclude them: {exc}") from exc


def load_test_set(path: Path, limit: int, exclude: list[Path] = ()) -> list[dict]:
    """Test items (request + human reference) from a JSONL written by ``finetune preprocess``,
    the first ``limit`` whose ids none of the ``exclude`` files hold."""
    excluded = set().union(*map(_ids, exclude))
    if not path.exists():
        raise EvalError(f"test set {path} does not exist; {TEST_SET_FORM}")
    if path.is_dir() or path.suffix.lower() in (".csv", ".parquet", ".wp_source", ".wp_target"):
        raise EvalError(
            f"{path}: {TEST_SET_FORM}. Make one from these stories first: python -m finetune "
            f"preprocess {path} --test-fraction 0.1 --out DIR, then use DIR/test.jsonl"
        )
    items = []
    with path.open() as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if str(row["id"]) in excluded:
                    continue
                plan = row.get("plan")
                items.append(
                    {
                        "id": str(row["id"]),
                        "reference": row["completion"],
                        "request": StoryRequest.from_dict(row["request"]),
                        "plan": Plan(plan["premise"], plan["beats"], "person") if plan else None,
                    }
                )
            except (ValueError, KeyError, TypeError) as exc:
                detail = exc.errors if isinstance(exc, RequestError) else exc
                raise EvalError(f"{path}:{n}: not a test item ({detail}); {TEST_SET_FORM}") from exc
            if len(items) >= limit:
                break
    if not items:
        raise EvalError(f"{path} holds no test item")
    return items
