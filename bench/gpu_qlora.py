"""QLoRA training throughput on a CUDA GPU: a LLaMA-2-7B-shaped model with random weights.

    python -m bench.gpu_qlora [--batch 4] [--seq 1024] [--steps 6] [--json runs/gpu_qlora.json]
    python -m bench.gpu_qlora --shape tiny --device cpu --steps 2   # smoke test, no GPU needed

Random weights give real speed and memory figures without downloading 13 GB: the model is built
in bf16 on the device and every linear layer but the output head is quantized to NF4 with
double quantization, as ``from_pretrained(..., BitsAndBytesConfig(load_in_4bit=True))`` does.
Each run starts from a freshly built model, batch x seq random tokens, LoRA r=8 on all seven
projections, ``--warmup`` discarded steps, then ``--steps`` timed ones:

- plain, checkpointing on / off: transformers + peft + bitsandbytes the way their docs show it
  (prepare_model_for_kbit_training, get_peft_model, ``model(labels=...).loss``, paged 8-bit
  AdamW);
- storygen: the trainer's own code (``finetune.train.add_lora``, ``batch_loss``,
  ``make_optimizer``), checkpointing on.

Prints tokens/s and peak memory (GPU: torch.cuda.max_memory_allocated; CPU: process RSS), the
ratios against plain-with-checkpointing, and the issue's reference and target.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from pathlib import Path

import torch

from bench.common import table
from eval.resources import PeakRSS

SHAPES = {
    "llama2-7b": {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "max_position_embeddings": 4096,
    },
    "tiny": {
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 172,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "max_position_embeddings": 512,
    },
}
# Measured by the author on an H200 with the plain stack, batch 4 x 1024.
REFERENCE = {"gc_tokens_per_s": 4900, "gc_peak_gib": 8.1, "tokens_per_s": 8700, "peak_gib": 43.8}
TARGET = {"tokens_per_s": 7000, "peak_gib": 8.5}


def random_4bit_llama(shape: str, device: torch.device, seed: int = 0):
    """A LlamaForCausalLM of the given shape, random bf16 weights, linear layers in NF4."""
    import bitsandbytes as bnb
    from transformers import LlamaConfig, LlamaForCausalLM

    from storygen.loading import guard_4bit_for_training

    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # 13.5 GB at 7B instead of 27 GB in fp32
    try:
        with torch.device(device):
            model = LlamaForCausalLM(LlamaConfig(**SHAPES[shape]))
    finally:
        torch.set_default_dtype(default)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or name == "lm_head":
                continue
            q = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=torch.bfloat16,
                compress_statistics=True,
                quant_type="nf4",
                device="meta",
            )
            weight = bnb.nn.Params4bit(
                child.weight.data,
                requires_grad=False,
                compress_statistics=True,
                quant_type="nf4",
                module=q,
            )
            q.weight = weight.to(device)  # quantizes
            setattr(parent, name, q)
    model.is_loaded_in_4bit = True  # what transformers' bnb quantizer sets; peft reads it
    guard_4bit_for_training(model)
    return model


def plain_step_setup(model, gradient_checkpointing: bool, device: torch.device):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    from finetune.config import TARGET_MODULES

    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    model = get_peft_model(
        model,
        LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.05,
            target_modules=TARGET_MODULES["llama"],  # all seven projections
            task_type="CAUSAL_LM",
        ),
    )
    params = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW8bit(params, lr=2e-4)
    else:
        optimizer = torch.optim.AdamW(params, lr=2e-4)

    def loss_fn(batch):
        return model(input_ids=batch["input_ids"], labels=batch["labels"]).loss

    return model, optimizer, loss_fn


def storygen_step_setup(model, gradient_checkpointing: bool, device: torch.device):
    from finetune.config import TrainConfig
    from finetune.train import add_lora, batch_loss, make_optimizer

    cfg = TrainConfig(gradient_checkpointing=gradient_checkpointing)
    model = add_lora(model, cfg)
    optimizer = make_optimizer(model, cfg, device)

    def loss_fn(batch):
        loss, n = batch_loss(model, batch)
        return loss / n

    return model, optimizer, loss_fn


def run(path: str, gc_on: bool, args, device: torch.device) -> dict:
    row = {"path": path, "grad_ckpt": gc_on}
    model = optimizer = None
    try:
        model = random_4bit_llama(args.shape, device)
        setup = plain_step_setup if path == "plain" else storygen_step_setup
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as rss:
            model, optimizer, loss_fn = setup(model, gc_on, device)
            model.train()
            gen = torch.Generator(device="cpu").manual_seed(1)
            vocab = SHAPES[args.shape]["vocab_size"]
            ids = torch.randint(0, vocab, (args.batch, args.seq), generator=gen).to(device)
            batch = {"input_ids": ids, "labels": ids, "attention_mask": torch.ones_like(ids)}
            losses = []
            for step in range(args.warmup + args.steps):
                if step == args.warmup:
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                loss = loss_fn(batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - t0
        row["tokens_per_s"] = args.batch * args.seq * args.steps / seconds
        row["peak_gib"] = (
            torch.cuda.max_memory_allocated() / 2**30
            if device.type == "cuda"
            else rss.peak_mib / 1024
        )
        row["loss_first_last"] = f"{losses[0]:.3f} / {losses[-1]:.3f}"
    except torch.OutOfMemoryError:
        row["tokens_per_s"], row["peak_gib"] = "OOM", "OOM"
    finally:
        del model, optimizer
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="llama2-7b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device: run on a GPU, or smoke-test with --shape tiny --device cpu"
        )
    if device.type == "cpu":
        torch.set_num_threads(1)
    rows = [
        run("plain", True, args, device),
        run("plain", False, args, device),
        run("storygen", True, args, device),
    ]
    base = rows[0]
    if isinstance(base.get("tokens_per_s"), float):
        for r in rows[1:]:
            if isinstance(r.get("tokens_per_s"), float):
                r["speed_vs_plain_gc"] = r["tokens_per_s"] / base["tokens_per_s"]
                r["memory_vs_plain_gc"] = r["peak_gib"] / base["peak_gib"]
    what = torch.cuda.get_device_name() if device.type == "cuda" else f"{platform.machine()} CPU"
    print(
        f"{args.shape}, random weights, NF4 + double quant, LoRA r=8 on 7 projections, "
        f"batch {args.batch} x {args.seq}, {args.steps} timed steps after {args.warmup}, on {what}"
    )
    columns = ["path", "grad_ckpt", "tokens_per_s", "peak_gib", "speed_vs_plain_gc"]
    print(table(rows, columns + ["memory_vs_plain_gc", "loss_first_last"]))
    if args.shape == "llama2-7b" and device.type == "cuda":
        ours = rows[2]
        met = (
            isinstance(ours.get("tokens_per_s"), float)
            and ours["tokens_per_s"] >= TARGET["tokens_per_s"]
            and ours["peak_gib"] <= TARGET["peak_gib"]
        )
        print(
            f"reference (plain stack, H200): {REFERENCE['gc_tokens_per_s']} tokens/s at "
            f"{REFERENCE['gc_peak_gib']} GiB with checkpointing, {REFERENCE['tokens_per_s']} at "
            f"{REFERENCE['peak_gib']} GiB without; target >= {TARGET['tokens_per_s']} tokens/s "
            f"at <= {TARGET['peak_gib']} GiB: {'met' if met else 'NOT met'}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"args": {**vars(args), "json": str(args.json)}, "rows": rows}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
