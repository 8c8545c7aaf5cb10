"""Model loading for the transformers backend, in one place: base model, quantization and LoRA.

Nothing else builds a ``BitsAndBytesConfig``, and the transformers backend and evaluation load
adapters only through :func:`load_model` (or :func:`load_base`) and pass the result around;
training wraps the base with a new trainable LoRA (``finetune/train.py``) and preference tuning
loads its parent adapter trainable (``finetune/preference.py``). The adapter checks
(:func:`adapter_path`, :func:`read_adapter_meta`, :func:`check_adapter`) are shared with the
llama.cpp backend, so torch is imported only inside the functions that need it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from storygen.config import DEMO_ADAPTER, ConfigError, ModelSpec, demo_adapter_dir
from storygen.prompt_format import FORMAT_VERSIONS

log = logging.getLogger(__name__)

# peft (0.x) still reads transformers' deprecated alias on every adapter it wraps: noise to a
# user, who can do nothing about it.
warnings.filterwarnings(
    "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
)

ADAPTER_META = "storygen_adapter.json"
GGUF_ADAPTER = "adapter_model.gguf"
"""The adapter's GGUF form (``python -m finetune export-gguf``), read by the llama.cpp backend."""
GGUF_KEY_BASE = "storygen.base_model"
GGUF_KEY_PROMPT_FORMAT = "storygen.prompt_format"
GGUF_KEY_ADAPTER_NAME = "storygen.adapter_name"


class LoadError(RuntimeError):
    """A model that cannot be loaded, with a message meant for the user."""


@dataclass
class LoadedModel:
    """A ready-to-use model, its tokenizer and where they came from."""

    model: Any
    tokenizer: Any
    spec: ModelSpec
    base_id: str
    device: Any
    """The ``torch.device`` the model runs on."""
    adapter_meta: dict[str, Any] | None = None


def resolve_device(requested: str):
    """Map ``auto``/``cpu``/``cuda`` to a ``torch.device`` (a clear error when CUDA is absent)."""
    import torch

    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise LoadError("CUDA was asked for, but no CUDA GPU is visible to torch; use --device cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def quantization_config(quantization: str, device):
    """The bitsandbytes config for ``nf4``/``int8`` (None for the plain dtypes)."""
    import torch

    if quantization not in ("nf4", "int8"):
        return None
    from transformers import BitsAndBytesConfig

    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )


def guard_4bit_for_training(model) -> int:
    """Keep bitsandbytes from repacking 4-bit weights for AVX512-BF16 on the CPU.

    On CPUs with avx512_bf16, the first inference pass through ``Linear4bit`` repacks its weight
    into a layout whose backward pass gives LoRA no gradient: training then runs with a flat
    loss and no error. Turning the repack off before any forward pass avoids it. Returns the
    number of layers guarded.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        return 0
    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def resolve_base(base: str) -> tuple[str, str]:
    """Return (what to pass to from_pretrained, the base model's id for provenance)."""
    from storygen.embedded import EmbeddedModelError, converted_dir, embedded_model

    embedded = embedded_model(base)
    if embedded is not None:
        try:
            return str(converted_dir(embedded)), embedded.model_id
        except EmbeddedModelError as exc:
            raise LoadError(str(exc)) from exc
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise LoadError(f"{path} is not a Hugging Face model folder (no config.json)")
        return str(path), _folder_id(path)
    if base.startswith((".", "/", "~")) or base.count("/") > 1:
        raise LoadError(f"model folder {base!r} does not exist")
    return base, base  # a hub id


def _folder_id(path: Path) -> str:
    """A local folder's model id: the hub id it records, else its absolute path."""
    try:
        recorded = json.loads((path / "config.json").read_text()).get("_name_or_path", "")
    except (OSError, ValueError):
        recorded = ""
    if recorded and not Path(recorded).is_absolute() and not recorded.startswith("."):
        return recorded
    return str(path.resolve())


def load_base(spec: ModelSpec, trainable: bool = False):
    """Load base model and tokenizer as ``spec`` says; return (model, tokenizer, base_id, device).

    ``trainable`` prepares 4-bit layers for LoRA training (see :func:`guard_4bit_for_training`);
    inference-only loads keep bitsandbytes' faster repacked CPU kernels.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(spec.device)
    source, base_id = resolve_base(spec.base)
    quantization = spec.quantization or "nf4"
    qconfig = quantization_config(quantization, device)
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(quantization, torch.float32)
    if device.type == "cuda" and qconfig is not None:
        dtype = torch.bfloat16
    kwargs: dict[str, Any] = {"dtype": dtype}
    if qconfig is not None:
        kwargs["quantization_config"] = qconfig
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise LoadError(f"not enough memory to load {base_id} as {quantization}: try nf4") from exc
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one readable message
        hint = "" if Path(source).exists() else " (a hub id needs a network connection)"
        raise LoadError(f"could not load {base_id!r}{hint}: {type(exc).__name__}: {exc}") from exc
    if qconfig is None:
        model.to(device)
    elif trainable:
        guard_4bit_for_training(model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer, base_id, device


def leading_ids(tokenizer) -> list[int]:
    """The token the model expects before every text: ``[bos]`` when the tokenizer adds one
    itself (Gemma, which degrades badly without it; LLaMA 2, Mistral), else none (SmolLM2,
    GPT-2). Every tokenization of a prompt starts with these, in training, scoring and writing."""
    ids = tokenizer("", add_special_tokens=True).input_ids
    return list(ids) if ids and list(ids) == [tokenizer.bos_token_id] else []


def with_leading(lead: list[int], ids: list[int]) -> list[int]:
    """``ids`` after ``lead``, unless they already start with it (a chat template's own BOS)."""
    return ids if ids[: len(lead)] == lead else lead + ids


def prompt_ids(tokenizer, text: str) -> list[int]:
    """A prompt's ids as the model expects them: its leading BOS, if any, then the text."""
    return with_leading(leading_ids(tokenizer), tokenizer(text, add_special_tokens=False).input_ids)


def read_adapter_meta(adapter_dir: Path) -> dict[str, Any]:
    """The storygen metadata saved next to a LoRA adapter."""
    meta_path = adapter_dir / ADAPTER_META
    if not (adapter_dir / "adapter_config.json").exists():
        raise LoadError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json)")
    if not meta_path.exists():
        raise LoadError(f"{adapter_dir} has no {ADAPTER_META}: it was not saved by finetune")
    try:
        return json.loads(meta_path.read_text())
    except ValueError as exc:
        raise LoadError(f"{meta_path} is not valid JSON: {exc}") from exc


def check_adapter(meta: dict[str, Any], base_id: str, adapter_dir: Path) -> None:
    """Refuse an adapter trained on another base model or prompt format."""
    if meta.get("base_model") != base_id:
        raise LoadError(
            f"adapter {adapter_dir} was trained on {meta.get('base_model')!r}, "
            f"not on {base_id!r}: pick the matching base model"
        )
    if meta.get("prompt_format") not in FORMAT_VERSIONS:
        raise LoadError(
            f"adapter {adapter_dir} uses prompt format {meta.get('prompt_format')!r}; this "
            f"version of storygen speaks {', '.join(FORMAT_VERSIONS)}: retrain the adapter"
        )


def read_gguf_adapter_meta(path: Path) -> dict[str, Any]:
    """The storygen metadata written into a GGUF adapter, in ``storygen_adapter.json``'s keys."""
    from gguf import GGUFReader

    try:
        fields = GGUFReader(path).fields
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file is one message
        raise LoadError(f"{path} is not a readable GGUF file: {type(exc).__name__}: {exc}") from exc
    keys = {
        "base_model": GGUF_KEY_BASE,
        "prompt_format": GGUF_KEY_PROMPT_FORMAT,
        "name": GGUF_KEY_ADAPTER_NAME,
    }
    meta = {k: fields[key].contents() for k, key in keys.items() if key in fields}
    if "base_model" not in meta:
        raise LoadError(
            f"{path} carries no {GGUF_KEY_BASE}: it was not written by "
            "`python -m finetune export-gguf`, so its base model cannot be checked"
        )
    return meta


def adapter_path(spec: ModelSpec) -> Path | None:
    """The adapter folder that ``spec`` names (None for the bare base model)."""
    if spec.adapter is None:
        return None
    if spec.adapter == DEMO_ADAPTER:
        try:
            return demo_adapter_dir(spec.base)
        except ConfigError as exc:
            raise LoadError(str(exc)) from exc
    return Path(spec.adapter).expanduser()


def load_model(spec: ModelSpec | None = None) -> LoadedModel:
    """Load base model, quantization and adapter as ``spec`` says; the one loading entry point."""
    spec = spec or ModelSpec()
    adir = adapter_path(spec)
    meta = None
    if adir is not None:
        if not adir.exists():
            raise LoadError(f"adapter folder {adir} does not exist")
        meta = read_adapter_meta(adir)
    model, tokenizer, base_id, device = load_base(spec)
    if adir is not None:
        check_adapter(meta, base_id, adir)
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adir), is_trainable=False)
        except Exception as exc:  # noqa: BLE001
            raise LoadError(f"could not load adapter {adir}: {type(exc).__name__}: {exc}") from exc
        model.eval()
    return LoadedModel(model, tokenizer, spec, base_id, device, meta)


class LineageError(ValueError):
    """A tuned adapter whose parent cannot be found as it was tuned from."""


def weights_sha256(adapter_dir: Path) -> str:
    """SHA-256 of an adapter folder's weights (``adapter_model.safetensors``)."""
    return hashlib.sha256(
        (Path(adapter_dir) / "adapter_model.safetensors").read_bytes()
    ).hexdigest()


def lineage_parent(child: Path, base: str = "embedded") -> str:
    """The parent adapter a tuned adapter's lineage names, as a model spec's ``adapter`` (as it
    was given to ``tune``; older lineages: the folder it was read from). Raises
    :class:`LineageError` when it names none, or when what that name loads now is not the
    adapter it was tuned from (an adapter replaced in place, such as a retrained demo)."""
    lineage = read_adapter_meta(Path(child)).get("lineage") or {}
    parent = lineage.get("parent_adapter") or lineage.get("parent_dir")
    if not parent:
        raise LineageError(
            f"{child}: its storygen_adapter.json names no parent (an adapter from "
            "`python -m finetune tune` does)"
        )
    expected = lineage.get("parent_sha256")
    if expected:
        try:
            folder = adapter_path(ModelSpec(base=base, adapter=parent))
            found = weights_sha256(folder)
        except (LoadError, OSError) as exc:
            raise LineageError(f"{child}: its parent {parent!r} cannot be read: {exc}") from exc
        if found != expected:
            raise LineageError(
                f"{child}: its parent {parent!r} ({folder}) is not the adapter it was tuned "
                "from (its weights changed since); name that adapter's folder instead"
            )
    return parent
