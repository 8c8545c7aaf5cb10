"""Model loading: quantization, adapters and their metadata, and clear errors."""

import json
import shutil

import pytest
import torch

from storygen.backends.hf import TransformersBackend
from storygen.config import ModelSpec
from storygen.loading import (
    ADAPTER_META,
    LoadError,
    guard_4bit_for_training,
    load_base,
    load_model,
)
from storygen.prompt_format import PROMPT_FORMAT_VERSION


def test_nf4_load_uses_4bit_layers(tiny_model_dir):
    import bitsandbytes as bnb

    lm = load_model(ModelSpec(base=str(tiny_model_dir), adapter=None, quantization="nf4"))
    layers = [m for m in lm.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 2 * 7  # every projection of both decoder layers
    assert layers[0].weight.quant_state.quant_type == "nf4"
    assert layers[0].weight.quant_state.nested  # double quantization
    assert TransformersBackend(lm).provenance()["quantization"] == "nf4"


def test_trainable_load_disables_the_avx512_repack(tiny_model_dir):
    import bitsandbytes as bnb

    model, *_ = load_base(ModelSpec(base=str(tiny_model_dir), adapter=None), trainable=True)
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(m.support_avx512bf16_for_cpu for m in layers)
    assert guard_4bit_for_training(torch.nn.Linear(2, 2)) == 0


def test_missing_and_corrupt_weights_give_clear_errors(tiny_model_dir, tmp_path):
    with pytest.raises(LoadError, match="does not exist"):
        load_model(ModelSpec(base=str(tmp_path / "nowhere"), adapter=None))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LoadError, match="no config.json"):
        load_model(ModelSpec(base=str(tmp_path / "empty"), adapter=None))
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(LoadError, match="could not load"):
        load_model(ModelSpec(base=str(broken), adapter=None, quantization="fp32"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on CPU-only machines")
def test_cuda_requested_without_gpu_is_a_clear_error(tiny_model_dir):
    with pytest.raises(LoadError, match="no CUDA GPU"):
        load_model(ModelSpec(base=str(tiny_model_dir), adapter=None, device="cuda"))


def _make_adapter(tiny_model_dir, folder, **meta_overrides):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(folder)
    meta = {
        "name": "t",
        "base_model": str(tiny_model_dir.resolve()),
        "prompt_format": PROMPT_FORMAT_VERSION,
        **meta_overrides,
    }
    (folder / ADAPTER_META).write_text(json.dumps(meta))
    return folder


def test_adapter_loads_and_mismatches_are_refused(tiny_model_dir, tmp_path):
    good = _make_adapter(tiny_model_dir, tmp_path / "good")
    lm = load_model(ModelSpec(base=str(tiny_model_dir), adapter=str(good), quantization="fp32"))
    assert TransformersBackend(lm).provenance()["adapter_name"] == "t"
    other = _make_adapter(tiny_model_dir, tmp_path / "other", base_model="gpt2")
    with pytest.raises(LoadError, match="trained on 'gpt2'"):
        load_model(ModelSpec(base=str(tiny_model_dir), adapter=str(other), quantization="fp32"))
    old = _make_adapter(tiny_model_dir, tmp_path / "old", prompt_format="storygen-tags-v0")
    with pytest.raises(LoadError, match="prompt format"):
        load_model(ModelSpec(base=str(tiny_model_dir), adapter=str(old), quantization="fp32"))
    with pytest.raises(LoadError, match="not a LoRA adapter"):
        load_model(ModelSpec(base=str(tiny_model_dir), adapter=str(tmp_path), quantization="fp32"))


def test_demo_adapter_only_fits_the_embedded_model(tiny_model_dir):
    with pytest.raises(LoadError, match="embedded"):
        load_model(ModelSpec(base=str(tiny_model_dir), adapter="demo"))


@pytest.mark.integration  # a fresh process
def test_wrapping_a_model_in_an_adapter_prints_no_library_deprecation_noise(tiny_model_dir):
    """peft reads a deprecated transformers property on every model it wraps; loading through
    storygen silences that FutureWarning (and only it). Without storygen's filter it shows."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "if sys.argv[1] == 'ours': import storygen.loading\n"
        "from peft import LoraConfig, get_peft_model\n"
        "from transformers import AutoModelForCausalLM\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(tiny_model_dir)!r})\n"
        "get_peft_model(m, LoraConfig(target_modules=['q_proj']))\n"
    )
    runs = {
        which: subprocess.run(
            [sys.executable, "-W", "default::FutureWarning", "-c", script, which],
            capture_output=True,
            text=True,
            timeout=120,
        )
        for which in ("plain", "ours")
    }
    assert all(r.returncode == 0 for r in runs.values()), runs
    assert "is_gradient_checkpointing" in runs["plain"].stderr
    assert "is_gradient_checkpointing" not in runs["ours"].stderr
